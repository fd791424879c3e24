//! Connection lifecycle: accept -> parse head -> decide -> connect -> forward.
