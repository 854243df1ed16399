//! Conversions between the generated protobuf types and the core types.
//!
//! Decoding is strict: anything the peer sent that does not make a valid core
//! value (a missing target, an unknown kind, a malformed conversation id or
//! body) is an [`Error::InvalidArgument`], never a panic.

use im_core::error::{Error, Result};
use im_core::id::{ConversationId, GroupId, MessageId, SessionId, UserId};
use im_core::logic::{ConversationPage, GroupCommand, Sender};
use im_core::model::{
    Envelope, Group, Member, Mentions, Message, MessageKind, NodeId, Presence, Role, SessionRoute,
    Target,
};
use im_core::ports::{ConversationEntry, ScheduledSend};
use im_core::protocol::{SendAck, SendRequest};

use super::pb;
use super::status::bad;

pub(crate) fn route_to_pb(r: &SessionRoute) -> pb::SessionRoute {
    pb::SessionRoute {
        user_id: r.user_id.0,
        node: r.node.0.clone(),
        session_id: r.session_id.0,
        device: r.device.clone(),
        token_id: r.token_id.clone(),
    }
}

pub(crate) fn route_from_pb(r: Option<pb::SessionRoute>) -> Result<SessionRoute> {
    let r = r.ok_or_else(|| bad("missing session route"))?;
    Ok(SessionRoute {
        user_id: UserId(r.user_id),
        node: NodeId(r.node),
        session_id: SessionId(r.session_id),
        device: r.device,
        token_id: r.token_id,
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

pub(crate) fn conversation_from_pb(s: &str) -> Result<ConversationId> {
    Ok(s.parse::<ConversationId>()?)
}

pub(crate) fn sender_to_pb(s: &Sender) -> pb::Sender {
    pb::Sender {
        user_id: s.user.0,
        origin: origin_to_pb(s.origin.as_ref()),
        throttled: s.throttled,
    }
}

fn sender_from_pb(s: Option<pb::Sender>) -> Result<Sender> {
    let s = s.ok_or_else(|| bad("missing sender"))?;
    Ok(Sender {
        user: UserId(s.user_id),
        origin: origin_from_pb(s.origin),
        throttled: s.throttled,
    })
}

pub(crate) fn send_to_pb(sender: &Sender, r: &SendRequest) -> Result<pb::SendRequest> {
    Ok(pb::SendRequest {
        sender: Some(sender_to_pb(sender)),
        client_msg_id: r.client_msg_id.clone(),
        to: Some(target_to_pb(r.to)),
        kind: r.kind.as_str().to_owned(),
        body_json: body_to_pb(&r.body)?,
        deliver_at: r.deliver_at,
        mentions_json: mentions_to_pb(r.mentions.as_ref())?,
    })
}

fn mentions_to_pb(m: Option<&Mentions>) -> Result<Option<String>> {
    m.map(|m| {
        serde_json::to_string(m).map_err(|e| Error::Internal(format!("encode mentions: {e}")))
    })
    .transpose()
}

fn mentions_from_pb(json: Option<&str>) -> Result<Option<Mentions>> {
    json.map(|j| serde_json::from_str(j).map_err(|e| bad(format!("malformed mentions: {e}"))))
        .transpose()
}

pub(crate) fn send_from_pb(r: pb::SendRequest) -> Result<(Sender, SendRequest)> {
    Ok((
        sender_from_pb(r.sender)?,
        SendRequest {
            client_msg_id: r.client_msg_id,
            to: target_from_pb(r.to)?,
            kind: kind_from_pb(&r.kind)?,
            body: body_from_pb(&r.body_json)?,
            deliver_at: r.deliver_at,
            mentions: mentions_from_pb(r.mentions_json.as_deref())?,
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
        deliver_at: a.deliver_at,
    }
}

pub(crate) fn ack_from_pb(a: pb::SendAck) -> Result<SendAck> {
    Ok(SendAck {
        conversation_id: conversation_from_pb(&a.conversation_id)?,
        client_msg_id: a.client_msg_id,
        msg_id: MessageId(a.msg_id),
        seq: a.seq,
        ts: a.ts,
        deliver_at: a.deliver_at,
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
        edited_at: m.edited_at,
        mentions_json: mentions_to_pb(m.mentions.as_ref())?,
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
        edited_at: m.edited_at,
        mentions: mentions_from_pb(m.mentions_json.as_deref())?,
    })
}

/// A held send (its envelope's origin and audience stay behind: a scheduled
/// send is delivered to every session, to the members at delivery time).
pub(crate) fn scheduled_to_pb(s: ScheduledSend) -> Result<pb::ScheduledSend> {
    Ok(pb::ScheduledSend {
        message: Some(message_to_pb(s.envelope.message)?),
        deliver_at: s.deliver_at,
    })
}

pub(crate) fn scheduled_from_pb(s: pb::ScheduledSend) -> Result<ScheduledSend> {
    let message = s
        .message
        .ok_or_else(|| bad("missing message of a scheduled send"))?;
    Ok(ScheduledSend {
        envelope: Envelope {
            message: message_from_pb(message)?,
            origin: None,
            audience: None,
        },
        deliver_at: s.deliver_at,
    })
}

pub(crate) fn member_to_pb(m: Member) -> pb::Member {
    pb::Member {
        user_id: m.user_id.0,
        role: m.role.as_str().to_owned(),
        muted_until: m.muted_until,
        joined_seq: m.joined_seq,
    }
}

fn role_from_pb(role: &str) -> Result<Role> {
    Role::parse(role).ok_or_else(|| bad(format!("unknown role {role:?}")))
}

pub(crate) fn member_from_pb(m: pb::Member) -> Result<Member> {
    let mut member = Member::new(UserId(m.user_id), role_from_pb(&m.role)?);
    member.muted_until = m.muted_until;
    Ok(member.joined_at(m.joined_seq))
}

pub(crate) fn group_to_pb(g: Group) -> pb::Group {
    pb::Group {
        group_id: g.id.0,
        name: g.name,
        owner: g.owner.0,
        created_at: g.created_at,
        muted_until: g.muted_until,
        history_visible: g.history_visible,
    }
}

pub(crate) fn group_from_pb(g: Option<pb::Group>) -> Result<Group> {
    let g = g.ok_or_else(|| bad("missing group"))?;
    Ok(Group {
        id: GroupId(g.group_id),
        name: g.name,
        owner: UserId(g.owner),
        created_at: g.created_at,
        muted_until: g.muted_until,
        history_visible: g.history_visible,
    })
}

pub(crate) fn command_to_pb(c: GroupCommand) -> pb::administer_group_request::Command {
    use pb::administer_group_request::Command;
    match c {
        GroupCommand::Rename { name } => Command::Rename(pb::RenameGroup { name }),
        GroupCommand::SetRole { user, role } => Command::SetRole(pb::SetMemberRole {
            user_id: user.0,
            role: role.as_str().to_owned(),
        }),
        GroupCommand::Transfer { to } => Command::Transfer(pb::TransferOwnership { to: to.0 }),
        GroupCommand::Mute { until } => Command::Mute(pb::MuteGroup { until }),
        GroupCommand::MuteMember { user, until } => Command::MuteMember(pb::MuteMember {
            user_id: user.0,
            until,
        }),
        GroupCommand::Dissolve => Command::Dissolve(pb::DissolveGroup {}),
        GroupCommand::SetHistoryVisible { visible } => {
            Command::SetHistoryVisible(pb::SetHistoryVisible { visible })
        }
    }
}

pub(crate) fn command_from_pb(
    c: Option<pb::administer_group_request::Command>,
) -> Result<GroupCommand> {
    use pb::administer_group_request::Command;
    Ok(match c.ok_or_else(|| bad("missing group command"))? {
        Command::Rename(r) => GroupCommand::Rename { name: r.name },
        Command::SetRole(r) => GroupCommand::SetRole {
            user: UserId(r.user_id),
            role: role_from_pb(&r.role)?,
        },
        Command::Transfer(t) => GroupCommand::Transfer { to: UserId(t.to) },
        Command::Mute(m) => GroupCommand::Mute { until: m.until },
        Command::MuteMember(m) => GroupCommand::MuteMember {
            user: UserId(m.user_id),
            until: m.until,
        },
        Command::Dissolve(_) => GroupCommand::Dissolve,
        Command::SetHistoryVisible(h) => GroupCommand::SetHistoryVisible { visible: h.visible },
    })
}

pub(crate) fn origin_to_pb(origin: Option<&(NodeId, SessionId)>) -> Option<pb::Origin> {
    origin.map(|(node, session)| pb::Origin {
        node: node.0.clone(),
        session_id: session.0,
    })
}

pub(crate) fn origin_from_pb(origin: Option<pb::Origin>) -> Option<(NodeId, SessionId)> {
    origin.map(|o| (NodeId(o.node), SessionId(o.session_id)))
}

pub(crate) fn presence_to_pb(p: Presence) -> pb::Presence {
    pb::Presence {
        user_id: p.user_id.0,
        online: p.online,
        last_seen: p.last_seen,
    }
}

pub(crate) fn presence_from_pb(p: pb::Presence) -> Presence {
    Presence {
        user_id: UserId(p.user_id),
        online: p.online,
        last_seen: p.last_seen,
    }
}

pub(crate) fn entry_to_pb(e: ConversationEntry) -> Result<pb::ConversationEntry> {
    Ok(pb::ConversationEntry {
        conversation_id: e.conversation_id.to_string(),
        last_message: Some(message_to_pb(e.last_message)?),
        last_seq: e.last_seq,
        read_seq: e.read_seq,
        unread: e.unread,
        peer_read_seq: e.peer_read_seq,
        mentioned: e.mentioned,
    })
}

pub(crate) fn entry_from_pb(e: pb::ConversationEntry) -> Result<ConversationEntry> {
    Ok(ConversationEntry {
        conversation_id: conversation_from_pb(&e.conversation_id)?,
        last_message: message_from_pb(
            e.last_message
                .ok_or_else(|| bad("missing last message of a conversation"))?,
        )?,
        last_seq: e.last_seq,
        read_seq: e.read_seq,
        unread: e.unread,
        peer_read_seq: e.peer_read_seq,
        mentioned: e.mentioned,
    })
}

pub(crate) fn page_to_pb(p: ConversationPage) -> Result<pb::ListConversationsResponse> {
    Ok(pb::ListConversationsResponse {
        conversations: p
            .conversations
            .into_iter()
            .map(entry_to_pb)
            .collect::<Result<_>>()?,
        next_cursor: p.next_cursor,
    })
}

pub(crate) fn page_from_pb(p: pb::ListConversationsResponse) -> Result<ConversationPage> {
    Ok(ConversationPage {
        conversations: p
            .conversations
            .into_iter()
            .map(entry_from_pb)
            .collect::<Result<_>>()?,
        next_cursor: p.next_cursor,
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
            throttled: true,
        };
        let req = SendRequest {
            client_msg_id: "c1".into(),
            to: Target::Group(GroupId(5)),
            kind: MessageKind::Custom,
            body: serde_json::json!({"a": [1, "x"]}),
            deliver_at: None,
            mentions: None,
        };
        let (s, r) = send_from_pb(send_to_pb(&sender, &req).unwrap()).unwrap();
        assert_eq!((s, r), (sender.clone(), req.clone()));
        let scheduled = SendRequest {
            deliver_at: Some(1_767_225_600_123),
            ..req
        };
        let (s, r) = send_from_pb(send_to_pb(&sender, &scheduled).unwrap()).unwrap();
        assert_eq!((s, r), (sender, scheduled));

        for deliver_at in [None, Some(1_767_225_600_123)] {
            let ack = SendAck {
                client_msg_id: "c1".into(),
                msg_id: MessageId(77),
                conversation_id: ConversationId::Group(GroupId(5)),
                seq: if deliver_at.is_some() { 0 } else { 3 },
                ts: deliver_at.unwrap_or(99),
                deliver_at,
            };
            assert_eq!(ack_from_pb(ack_to_pb(ack.clone())).unwrap(), ack);
        }

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
            edited_at: None,
            mentions: None,
        };
        assert_eq!(
            message_from_pb(message_to_pb(m.clone()).unwrap()).unwrap(),
            m
        );

        let held = ScheduledSend {
            envelope: Envelope {
                message: Message {
                    seq: 0,
                    recalled: false,
                    body: serde_json::json!("later"),
                    ..m
                },
                origin: None,
                audience: None,
            },
            deliver_at: 1_767_225_600_123,
        };
        assert_eq!(
            scheduled_from_pb(scheduled_to_pb(held.clone()).unwrap()).unwrap(),
            held
        );
        assert!(matches!(
            scheduled_from_pb(pb::ScheduledSend {
                message: None,
                deliver_at: 1
            }),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn v1_1_types_round_trip() {
        let mut member = Member::new(UserId(4), Role::Admin);
        member.muted_until = Some(i64::MAX);
        assert_eq!(member_from_pb(member_to_pb(member)).unwrap(), member);
        let plain = Member::new(UserId(5), Role::Member);
        assert_eq!(member_from_pb(member_to_pb(plain)).unwrap(), plain);

        let group = Group {
            id: GroupId(8),
            name: "team".into(),
            owner: UserId(4),
            created_at: 99,
            muted_until: Some(1234),
            history_visible: false,
        };
        assert_eq!(
            group_from_pb(Some(group_to_pb(group.clone()))).unwrap(),
            group
        );
        assert!(matches!(
            group_from_pb(None),
            Err(Error::InvalidArgument(_))
        ));

        for c in [
            GroupCommand::Rename { name: "n".into() },
            GroupCommand::SetRole {
                user: UserId(2),
                role: Role::Admin,
            },
            GroupCommand::Transfer { to: UserId(3) },
            GroupCommand::Mute { until: None },
            GroupCommand::Mute {
                until: Some(i64::MAX),
            },
            GroupCommand::MuteMember {
                user: UserId(2),
                until: Some(7),
            },
            GroupCommand::Dissolve,
        ] {
            assert_eq!(command_from_pb(Some(command_to_pb(c.clone()))).unwrap(), c);
        }
        assert!(matches!(
            command_from_pb(None),
            Err(Error::InvalidArgument(_))
        ));
        let bad_role = pb::administer_group_request::Command::SetRole(pb::SetMemberRole {
            user_id: 2,
            role: "king".into(),
        });
        assert!(matches!(
            command_from_pb(Some(bad_role)),
            Err(Error::InvalidArgument(_))
        ));

        for p in [
            Presence {
                user_id: UserId(1),
                online: false,
                last_seen: None,
            },
            Presence {
                user_id: UserId(2),
                online: true,
                last_seen: Some(5),
            },
        ] {
            assert_eq!(presence_from_pb(presence_to_pb(p)), p);
        }

        let last = Message {
            msg_id: MessageId(70),
            conversation_id: ConversationId::Group(GroupId(8)),
            seq: 3,
            from: UserId(4),
            to: Target::Group(GroupId(8)),
            kind: MessageKind::System,
            body: serde_json::json!({"event": "group_renamed", "actor": "4", "name": "n"}),
            client_msg_id: "sys".into(),
            ts: 10,
            recalled: false,
            edited_at: None,
            mentions: None,
        };
        let page = ConversationPage {
            conversations: vec![ConversationEntry {
                conversation_id: ConversationId::Group(GroupId(8)),
                last_message: last,
                last_seq: 3,
                read_seq: 1,
                unread: 2,
                mentioned: false,
                peer_read_seq: None,
            }],
            next_cursor: Some("10~g:8".into()),
        };
        assert_eq!(
            page_from_pb(page_to_pb(page.clone()).unwrap()).unwrap(),
            page
        );
        let mut missing = page_to_pb(page).unwrap();
        if let Some(e) = missing.conversations.first_mut() {
            e.last_message = None;
        }
        assert!(matches!(
            page_from_pb(missing),
            Err(Error::InvalidArgument(_))
        ));
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
                deliver_at: None,
                mentions: None,
            },
        )
        .unwrap();
        p.kind = "hologram".into();
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
