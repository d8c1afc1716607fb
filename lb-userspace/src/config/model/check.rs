//! A health check's table (`[vip.check]`, a backend's `check`) as written.

use std::fmt;

use serde::{
    Deserialize, Deserializer,
    de::{self, SeqAccess, Visitor},
};
use toml::Spanned;

use super::value::{RawCommand, RawDuration};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CheckType {
    Tcp,
    /// A SYN, answered by a SYN-ACK (up) or an RST (down); no connection.
    #[serde(rename = "tcp-half-open")]
    TcpHalfOpen,
    Http,
    Https,
    Udp,
    /// One DNS query over UDP (keepalived's DNS_CHECK).
    Dns,
    Script,
    /// Turns off a check the backend would inherit from its VIP.
    None,
}

impl CheckType {
    pub(crate) fn name(self) -> &'static str {
        match self {
            CheckType::Tcp => "tcp",
            CheckType::TcpHalfOpen => "tcp-half-open",
            CheckType::Http => "http",
            CheckType::Https => "https",
            CheckType::Udp => "udp",
            CheckType::Dns => "dns",
            CheckType::Script => "script",
            CheckType::None => "none",
        }
    }
}

/// Every key any check kind takes: one table for all kinds, so that a VIP's
/// `[vip.check]` and a backend's override merge key by key, and a key that
/// does not fit the kind gets a message that says so.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheck {
    #[serde(rename = "type")]
    pub kind: Option<Spanned<CheckType>>,
    pub interval: Option<Spanned<RawDuration>>,
    pub timeout: Option<Spanned<RawDuration>>,
    pub fall: Option<Spanned<i64>>,
    pub rise: Option<Spanned<i64>>,
    pub delay_before_retry: Option<Spanned<RawDuration>>,
    pub warmup: Option<Spanned<RawDuration>>,
    pub port: Option<Spanned<i64>>,
    pub path: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub status: Option<Spanned<RawStatus>>,
    pub body_contains: Option<Spanned<String>>,
    pub digest: Option<Spanned<String>>,
    pub sni: Option<Spanned<String>>,
    pub verify: Option<Spanned<bool>>,
    pub payload: Option<Spanned<String>>,
    pub payload_hex: Option<Spanned<String>>,
    pub expect: Option<Spanned<String>>,
    pub expect_hex: Option<Spanned<String>>,
    pub query_type: Option<Spanned<String>>,
    pub query_name: Option<Spanned<String>>,
    pub command: Option<Spanned<RawCommand>>,
    pub shell: Option<Spanned<bool>>,
    pub user: Option<Spanned<String>>,
    pub dynamic_weight: Option<Spanned<bool>>,
}

/// `status = 200`, `status = "200-299"`, or a list of either.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum RawStatus {
    One(StatusItem),
    List(Vec<Spanned<StatusItem>>),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum StatusItem {
    Code(i64),
    Text(String),
}

struct StatusItemVisitor;

impl Visitor<'_> for StatusItemVisitor {
    type Value = StatusItem;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a status code such as 200 or a range such as \"200-299\"")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusItem, E> {
        Ok(StatusItem::Code(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusItem, E> {
        Ok(StatusItem::Code(i64::try_from(v).unwrap_or(i64::MAX)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<StatusItem, E> {
        Ok(StatusItem::Text(v.to_owned()))
    }
}

impl<'de> Deserialize<'de> for StatusItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StatusItemVisitor)
    }
}

impl<'de> Deserialize<'de> for RawStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawStatus;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("status codes: 200, \"200-299\" or a list of them")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawStatus, E> {
                StatusItemVisitor.visit_i64(v).map(RawStatus::One)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawStatus, E> {
                StatusItemVisitor.visit_u64(v).map(RawStatus::One)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawStatus, E> {
                StatusItemVisitor.visit_str(v).map(RawStatus::One)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawStatus, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(RawStatus::List(items))
            }
        }
        deserializer.deserialize_any(V)
    }
}
