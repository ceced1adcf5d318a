//! Integration tests of the application layer over a real event log in a temporary
//! directory, with a manual clock; one binary, one module per concern.

mod config;
mod demo_clock;
mod helpers;
mod lifecycle;
mod privacy;
mod queries;
mod submission;
mod timers;
