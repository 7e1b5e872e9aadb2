//! The ids that cross module boundaries, each its own type, so a task id can never be passed
//! where an account or a channel is meant. They stay strings on the wire and in the database.

use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        // Stored as the string it is (what sqlx's `#[sqlx(transparent)]` derive writes, without
        // its compile-time machinery in the build).
        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            String: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            String: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut DB::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <String as sqlx::Encode<'q, DB>>::encode_by_ref(&self.0, buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            String: sqlx::Decode<'r, DB>,
        {
            fn decode(value: DB::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                <String as sqlx::Decode<'r, DB>>::decode(value).map(Self)
            }
        }

        impl $name {
            /// Wraps an id read from storage, a request path or configuration; it is not
            /// checked here, because looking up an id that does not exist simply finds nothing.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::convert::Infallible;

            fn from_str(id: &str) -> Result<Self, Self::Err> {
                Ok(Self::new(id))
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

string_id! {
    /// A generation task (`vtask_<ulid>`): sorts by creation time.
    TaskId
}

string_id! {
    /// An API key's account: it creates tasks, owns them and is charged for them (its
    /// organization's balance pays for a live key; a test key pays in its own play money).
    AccountId
}

string_id! {
    /// An organization: it holds the money and the keys.
    OrgId
}

string_id! {
    /// An upstream channel, as named in the configuration.
    ChannelId
}

string_id! {
    /// A material asset (`asset-YYYYMMDDHHMMSS-xxxxx`), usable as `asset://<id>`.
    MaterialId
}

string_id! {
    /// A group of material assets (`group-YYYYMMDDHHMMSS-xxxxx`).
    MaterialGroupId
}

/// `<prefix>-<UTC time to the second>-<5 lowercase letters or digits>`, the platform's form.
fn timestamped(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..5)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect();
    format!(
        "{prefix}-{}-{suffix}",
        chrono::Utc::now().format("%Y%m%d%H%M%S")
    )
}

impl MaterialId {
    pub fn mint() -> Self {
        Self(timestamped("asset"))
    }
}

impl MaterialGroupId {
    pub fn mint() -> Self {
        Self(timestamped("group"))
    }
}

impl TaskId {
    /// A fresh id. Ids sort by creation time (the list's order and cursor), also for ids minted
    /// within the same millisecond: a monotonic generator bumps the random part instead of
    /// redrawing it.
    pub fn mint() -> Self {
        static GENERATOR: std::sync::LazyLock<std::sync::Mutex<ulid::Generator>> =
            std::sync::LazyLock::new(|| std::sync::Mutex::new(ulid::Generator::new()));
        let ulid = match GENERATOR.lock().ok().and_then(|mut g| g.generate().ok()) {
            Some(ulid) => ulid,
            // Overflow within one millisecond or a poisoned lock: a fresh id still sorts by time.
            None => ulid::Ulid::new(),
        };
        Self(format!("vtask_{ulid}"))
    }
}

impl TaskId {
    /// The task a client names, in either surface's spelling (`vtask_…` or Ark's `cgt-…`).
    pub fn from_either(id: &str) -> Self {
        Self(seedgate_contract::parse::canonical_task_id(id))
    }

    /// This id as the Ark-compatible surface shows it.
    pub fn ark_spelling(&self) -> String {
        use seedgate_contract::parse::{ARK_TASK_ID_PREFIX, TASK_ID_PREFIX};
        match self.0.strip_prefix(TASK_ID_PREFIX) {
            Some(ulid) => format!("{ARK_TASK_ID_PREFIX}{ulid}"),
            None => self.0.clone(),
        }
    }
}

/// A task id read from a request path, in either surface's spelling.
#[derive(serde::Deserialize)]
#[serde(from = "String")]
pub struct AnyTaskId(pub TaskId);

impl From<String> for AnyTaskId {
    fn from(id: String) -> Self {
        Self(TaskId::from_either(&id))
    }
}

impl AccountId {
    pub fn mint() -> Self {
        Self(format!("key_{}", ulid::Ulid::new()))
    }
}

impl OrgId {
    pub fn mint() -> Self {
        Self(format!("org_{}", ulid::Ulid::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_minted_in_a_burst_sort_in_mint_order() {
        let ids: Vec<TaskId> = (0..1000).map(|_| TaskId::mint()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(ids[0].as_str().starts_with("vtask_"));
    }

    #[test]
    fn material_ids_have_the_platforms_form() {
        let id = MaterialId::mint();
        let (prefix, rest) = id.as_str().split_at(6);
        assert_eq!(prefix, "asset-");
        let (time, suffix) = rest.split_once('-').unwrap();
        assert!(
            time.len() == 14 && time.bytes().all(|b| b.is_ascii_digit()),
            "{id}"
        );
        assert!(
            suffix.len() == 5
                && suffix
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert!(MaterialGroupId::mint().as_str().starts_with("group-"));
    }

    #[test]
    fn task_ids_read_the_same_in_either_spelling() {
        let id = TaskId::mint();
        let ark = id.ark_spelling();
        assert!(ark.starts_with("cgt-"), "{ark}");
        assert_eq!(TaskId::from_either(&ark), id);
        assert_eq!(TaskId::from_either(id.as_str()), id);
        assert_eq!(TaskId::new("other").ark_spelling(), "other");
    }

    #[test]
    fn ids_serialize_as_plain_strings() {
        let id = ChannelId::new("primary");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"primary\"");
        assert_eq!(id.to_string(), "primary");
    }
}
