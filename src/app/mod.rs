//! Applications that run on the stack.

pub mod echo;
