//! The durable event log: segment files are the record, sled indexes them.
