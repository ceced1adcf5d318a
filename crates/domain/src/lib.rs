//! The rules of the work: pure decisions over folded request state.
