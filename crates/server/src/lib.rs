//! The process shell of anju-server.
