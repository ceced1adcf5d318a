//! `--json` output: any anju.v1 message as its canonical protobuf JSON (proto field
//! names, enum names, RFC 3339 timestamps), through the descriptor set the proto
//! crate ships, so scripts get every field without a hand-written mapping.

use std::sync::OnceLock;

use anyhow::Context;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(anju_proto::FILE_DESCRIPTOR_SET)
            .expect("anju-proto's descriptor set decodes")
    })
}

/// `message` (of type `anju.v1.<name>`) as a JSON value.
pub fn to_value<M: prost::Message>(name: &str, message: &M) -> anyhow::Result<serde_json::Value> {
    let full_name = format!("anju.v1.{name}");
    let descriptor = pool()
        .get_message_by_name(&full_name)
        .with_context(|| format!("no message {full_name} in the descriptor set"))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .with_context(|| format!("re-decoding {full_name}"))?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false);
    let value = dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .with_context(|| format!("writing {full_name} as JSON"))?;
    Ok(value)
}

/// Prints `message` as one line of JSON.
pub fn print<M: prost::Message>(name: &str, message: &M) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(&to_value(name, message)?)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use anju_proto::v1::{Deadline, QueueItem, RequestState, SlaStatus};

    #[test]
    fn messages_come_out_with_proto_names_and_enum_names() {
        let item = QueueItem {
            request_id: "r-1".into(),
            state: RequestState::Accepted as i32,
            deadline: Some(Deadline {
                kind: "decision".into(),
                due_at: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
                sla_status: SlaStatus::YellowCard as i32,
                overdue: true,
                ..Deadline::default()
            }),
            ..QueueItem::default()
        };
        let value = super::to_value("QueueItem", &item).unwrap();
        assert_eq!(value["request_id"], "r-1");
        assert_eq!(value["state"], "REQUEST_STATE_ACCEPTED");
        assert_eq!(value["deadline"]["sla_status"], "SLA_STATUS_YELLOW_CARD");
        assert_eq!(value["deadline"]["due_at"], "2023-11-14T22:13:20Z");
    }
}
