//! anju's gRPC contract: the generated `anju.v1` messages, clients and servers, and
//! the encoded file descriptor set that gRPC reflection serves.
//!
//! Proto types stay at the edge: the api layer converts them to domain types by hand.

/// The `anju.v1` package: messages, `*_client` and `*_server` modules.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("anju.v1");
}

/// Encoded `google.protobuf.FileDescriptorSet` of every anju.v1 file, for
/// tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("anju_v1_descriptor");

/// Fully qualified gRPC service names, as health checks and reflection list them.
pub const SERVICE_NAMES: [&str; 5] = [
    "anju.v1.ResidentService",
    "anju.v1.CaseworkerService",
    "anju.v1.ManagerService",
    "anju.v1.EventLogService",
    "anju.v1.AdminService",
];

#[cfg(test)]
mod tests {
    use prost::Message;

    #[test]
    fn descriptor_set_holds_every_service() {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET)
            .expect("descriptor set decodes");
        let services: Vec<String> = set
            .file
            .iter()
            .flat_map(|file| {
                let package = file.package().to_string();
                file.service
                    .iter()
                    .map(move |s| format!("{package}.{}", s.name()))
            })
            .collect();
        for name in super::SERVICE_NAMES {
            assert!(
                services.iter().any(|s| s == name),
                "{name} missing from {services:?}"
            );
        }
    }
}
