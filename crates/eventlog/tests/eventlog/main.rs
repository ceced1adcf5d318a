//! Integration tests of the event log, one binary: appends, reads, recovery, the offline
//! verify and salvage, subscriptions,
//! and a property test against an in-memory model.

mod append;
mod backup;
mod full_disk;
mod helpers;
mod model;
mod offline;
mod reads;
mod recovery;
mod subscribe;
