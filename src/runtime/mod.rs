//! Thread per core. Owned by the lead; see docs/ARCHITECTURE.md.
