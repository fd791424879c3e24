//! Embedded demo upstream for `lyre demo`.
