//! anju's gRPC contract: the generated `anju.v1` messages, clients and servers, and
//! the encoded file descriptor set that gRPC reflection serves.
//!
//! Proto types stay at the edge: the api layer converts them to domain types by hand.

/// The `anju.v1` package: messages, `*_client` and `*_server` modules.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("anju.v1");
}

/// The codec of every anju.v1 client and server: prost, with 1 KiB starting buffers
/// instead of tonic's 8 KiB. anju's messages are mostly a few hundred bytes, and an
/// 8 KiB buffer for every call is a large allocation for glibc's malloc (it consolidates
/// its small-chunk lists first): 4–5 % of the server's CPU under the submission load.
/// Larger messages grow the buffer as before.
pub struct Codec<T, U>(std::marker::PhantomData<(T, U)>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Codec(std::marker::PhantomData)
    }
}

fn buffer_settings() -> tonic::codec::BufferSettings {
    tonic::codec::BufferSettings::new(1024, 32 * 1024)
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = tonic_prost::ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(buffer_settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::new(buffer_settings())
    }
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
