//! HaRP's routing and authorization decision as pure code (harp-compat.md §3).
//! Owned by helper "decide"; never touches a socket.
