//! The built-in load generator (`lyre bench`). Owned by helper "pump".
