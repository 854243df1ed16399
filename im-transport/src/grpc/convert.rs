//! Conversions between the generated protobuf types and the core types.
//!
//! Decoding is strict: anything the peer sent that does not make a valid core
//! value (a missing target, an unknown kind, a malformed conversation id or
//! body) is an [`Error::InvalidArgument`], never a panic.

use im_core::error::{Error, Result};
use im_core::id::{ConversationId, GroupId, MessageId, SessionId, UserId};
use im_core::logic::Sender;
use im_core::model::{Member, Message, MessageKind, NodeId, Role, SessionRoute, Target};
use im_core::protocol::{SendAck, SendRequest};

use super::pb;
use super::status::bad;

pub(crate) fn route_to_pb(r: &SessionRoute) -> pb::SessionRoute {
    pb::SessionRoute {
        user_id: r.user_id.0,
        node: r.node.0.clone(),
        session_id: r.session_id.0,
        device: r.device.clone(),
    }
}

pub(crate) fn route_from_pb(r: Option<pb::SessionRoute>) -> Result<SessionRoute> {
    let r = r.ok_or_else(|| bad("missing session route"))?;
    Ok(SessionRoute {
        user_id: UserId(r.user_id),
        node: NodeId(r.node),
        session_id: SessionId(r.session_id),
        device: r.device,
    })
}

pub(crate) fn routes_from_pb(rs: Vec<pb::SessionRoute>) -> Result<Vec<SessionRoute>> {
    rs.into_iter().map(|r| route_from_pb(Some(r))).collect()
}

pub(crate) fn target_to_pb(t: Target) -> pb::Target {
    pb::Target {
        to: Some(match t {
            Target::User(u) => pb::target::To::User(u.0),
            Target::Group(g) => pb::target::To::Group(g.0),
        }),
    }
}

pub(crate) fn target_from_pb(t: Option<pb::Target>) -> Result<Target> {
    match t.and_then(|t| t.to) {
        Some(pb::target::To::User(u)) => Ok(Target::User(UserId(u))),
        Some(pb::target::To::Group(g)) => Ok(Target::Group(GroupId(g))),
        None => Err(bad("missing target")),
    }
}

fn kind_from_pb(kind: &str) -> Result<MessageKind> {
    if kind.is_empty() {
        return Ok(MessageKind::Text);
    }
    MessageKind::parse(kind).ok_or_else(|| bad(format!("unknown message kind {kind:?}")))
}

fn body_to_pb(body: &serde_json::Value) -> Result<String> {
    serde_json::to_string(body).map_err(|e| Error::Internal(format!("body to JSON: {e}")))
}

fn body_from_pb(json: &str) -> Result<serde_json::Value> {
    if json.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(json).map_err(|e| bad(format!("body is not JSON: {e}")))
}

fn conversation_from_pb(s: &str) -> Result<ConversationId> {
    Ok(s.parse::<ConversationId>()?)
}

pub(crate) fn sender_to_pb(s: &Sender) -> pb::Sender {
    pb::Sender {
        user_id: s.user.0,
        origin: s.origin.as_ref().map(|(node, session)| pb::Origin {
            node: node.0.clone(),
            session_id: session.0,
        }),
    }
}

fn sender_from_pb(s: Option<pb::Sender>) -> Result<Sender> {
    let s = s.ok_or_else(|| bad("missing sender"))?;
    Ok(Sender {
        user: UserId(s.user_id),
        origin: s.origin.map(|o| (NodeId(o.node), SessionId(o.session_id))),
    })
}

pub(crate) fn send_to_pb(sender: &Sender, r: &SendRequest) -> Result<pb::SendRequest> {
    Ok(pb::SendRequest {
        sender: Some(sender_to_pb(sender)),
        client_msg_id: r.client_msg_id.clone(),
        to: Some(target_to_pb(r.to)),
        kind: r.kind.as_str().to_owned(),
        body_json: body_to_pb(&r.body)?,
    })
}

pub(crate) fn send_from_pb(r: pb::SendRequest) -> Result<(Sender, SendRequest)> {
    Ok((
        sender_from_pb(r.sender)?,
        SendRequest {
            client_msg_id: r.client_msg_id,
            to: target_from_pb(r.to)?,
            kind: kind_from_pb(&r.kind)?,
            body: body_from_pb(&r.body_json)?,
        },
    ))
}

pub(crate) fn ack_to_pb(a: SendAck) -> pb::SendAck {
    pb::SendAck {
        client_msg_id: a.client_msg_id,
        msg_id: a.msg_id.0,
        conversation_id: a.conversation_id.to_string(),
        seq: a.seq,
        ts: a.ts,
    }
}

pub(crate) fn ack_from_pb(a: pb::SendAck) -> Result<SendAck> {
    Ok(SendAck {
        conversation_id: conversation_from_pb(&a.conversation_id)?,
        client_msg_id: a.client_msg_id,
        msg_id: MessageId(a.msg_id),
        seq: a.seq,
        ts: a.ts,
    })
}

pub(crate) fn message_to_pb(m: Message) -> Result<pb::Message> {
    Ok(pb::Message {
        msg_id: m.msg_id.0,
        conversation_id: m.conversation_id.to_string(),
        seq: m.seq,
        from: m.from.0,
        to: Some(target_to_pb(m.to)),
        kind: m.kind.as_str().to_owned(),
        body_json: body_to_pb(&m.body)?,
        client_msg_id: m.client_msg_id,
        ts: m.ts,
        recalled: m.recalled,
    })
}

pub(crate) fn message_from_pb(m: pb::Message) -> Result<Message> {
    Ok(Message {
        msg_id: MessageId(m.msg_id),
        conversation_id: conversation_from_pb(&m.conversation_id)?,
        seq: m.seq,
        from: UserId(m.from),
        to: target_from_pb(m.to)?,
        kind: kind_from_pb(&m.kind)?,
        body: body_from_pb(&m.body_json)?,
        client_msg_id: m.client_msg_id,
        ts: m.ts,
        recalled: m.recalled,
    })
}

pub(crate) fn member_to_pb(m: Member) -> pb::Member {
    pb::Member {
        user_id: m.user_id.0,
        role: m.role.as_str().to_owned(),
    }
}

pub(crate) fn member_from_pb(m: pb::Member) -> Result<Member> {
    Ok(Member {
        user_id: UserId(m.user_id),
        role: Role::parse(&m.role).ok_or_else(|| bad(format!("unknown role {:?}", m.role)))?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn sends_and_messages_round_trip() {
        let sender = Sender {
            user: UserId(3),
            origin: Some((NodeId::new("n1"), SessionId(9))),
        };
        let req = SendRequest {
            client_msg_id: "c1".into(),
            to: Target::Group(GroupId(5)),
            kind: MessageKind::Custom,
            body: serde_json::json!({"a": [1, "x"]}),
        };
        let (s, r) = send_from_pb(send_to_pb(&sender, &req).unwrap()).unwrap();
        assert_eq!((s, r), (sender, req));

        let m = Message {
            msg_id: MessageId(77),
            conversation_id: ConversationId::direct(UserId(9), UserId(2)).unwrap(),
            seq: 4,
            from: UserId(9),
            to: Target::User(UserId(2)),
            kind: MessageKind::Text,
            body: serde_json::Value::Null,
            client_msg_id: "k".into(),
            ts: 123,
            recalled: true,
        };
        assert_eq!(
            message_from_pb(message_to_pb(m.clone()).unwrap()).unwrap(),
            m
        );
    }

    #[test]
    fn malformed_input_is_invalid_argument() {
        let mut p = send_to_pb(
            &Sender::http(UserId(1)),
            &SendRequest {
                client_msg_id: "c".into(),
                to: Target::User(UserId(2)),
                kind: MessageKind::Text,
                body: serde_json::json!("hi"),
            },
        )
        .unwrap();
        p.kind = "video".into();
        assert!(matches!(
            send_from_pb(p.clone()),
            Err(Error::InvalidArgument(_))
        ));
        p.kind = String::new();
        p.body_json = "{".into();
        assert!(matches!(
            send_from_pb(p.clone()),
            Err(Error::InvalidArgument(_))
        ));
        p.body_json = "\"hi\"".into();
        p.to = None;
        assert!(matches!(send_from_pb(p), Err(Error::InvalidArgument(_))));
        let bad_ack = pb::SendAck {
            conversation_id: "u:5:2".into(),
            ..Default::default()
        };
        assert!(matches!(
            ack_from_pb(bad_ack),
            Err(Error::InvalidArgument(_))
        ));
    }
}
