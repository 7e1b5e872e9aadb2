//! The material library as the domain sees it: groups and assets of reusable reference
//! material, owned by an organization and scoped by project inside it.

use super::StoreError;
use crate::ids::{MaterialGroupId, MaterialId, OrgId};

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == text)
            }

            pub(super) fn read(text: &str) -> Result<Self, StoreError> {
                Self::parse(text).ok_or_else(|| {
                    StoreError::Corrupt(format!("unknown {} {text}", stringify!($name)))
                })
            }
        }
    };
}

wire_enum! {
    /// Virtual-avatar material, or verified real-person material (`liveness_face`), which needs
    /// an identity check this server cannot make.
    LibraryType { AigcAvatar = "aigc_avatar", LivenessFace = "liveness_face" }
}

wire_enum! {
    AssetType { Image = "Image", Video = "Video", Audio = "Audio" }
}

wire_enum! {
    /// `PROCESSING` → `ACTIVE` | `FAILED`; any of them → `DELETED`.
    MaterialStatus {
        Processing = "PROCESSING",
        Active = "ACTIVE",
        Failed = "FAILED",
        Deleted = "DELETED",
    }
}

wire_enum! {
    GroupStatus { Active = "ACTIVE", Deleted = "DELETED" }
}

#[derive(Clone, Debug)]
pub struct MaterialGroup {
    pub id: MaterialGroupId,
    pub organization_id: OrgId,
    pub project_name: String,
    pub library_type: LibraryType,
    pub group_name: Option<String>,
    pub description: Option<String>,
    /// A JSON object, as the client sent it.
    pub metadata: Option<String>,
    pub status: GroupStatus,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Clone, Debug)]
pub struct MaterialAsset {
    pub id: MaterialId,
    pub organization_id: OrgId,
    pub project_name: String,
    pub group_id: Option<MaterialGroupId>,
    pub library_type: LibraryType,
    pub asset_name: Option<String>,
    pub asset_type: AssetType,
    pub source_url: String,
    pub status: MaterialStatus,
    /// Why processing failed, fit to show the client.
    pub error_message: Option<String>,
    pub metadata: Option<String>,
    /// What the stored bytes are, once ACTIVE.
    pub content_type: Option<String>,
    pub size_bytes: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A group to create.
pub struct NewGroup<'a> {
    pub organization_id: &'a OrgId,
    pub project_name: &'a str,
    pub library_type: LibraryType,
    pub group_name: Option<&'a str>,
    pub description: Option<&'a str>,
    pub metadata: Option<&'a str>,
}

/// An asset to create; it starts PROCESSING, leased for `lease_ms` by its creator.
pub struct NewAsset<'a> {
    pub organization_id: &'a OrgId,
    pub project_name: &'a str,
    pub group_id: Option<&'a MaterialGroupId>,
    pub library_type: LibraryType,
    pub asset_name: Option<&'a str>,
    pub asset_type: AssetType,
    pub source_url: &'a str,
    pub metadata: Option<&'a str>,
    pub lease_ms: i64,
}

/// Why an asset naming a group was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupRefused {
    /// The organization has no group with this id in the asset's project.
    Unknown,
    Deleted,
}

/// A change to an asset; None leaves a field as it is. A new source URL processes the asset
/// again.
#[derive(Debug, Default)]
pub struct AssetUpdate {
    pub asset_name: Option<String>,
    pub asset_type: Option<AssetType>,
    pub source_url: Option<String>,
    pub metadata: Option<Option<String>>,
}

#[derive(Debug, Default)]
pub struct GroupUpdate {
    pub group_name: Option<String>,
    pub description: Option<Option<String>>,
    pub metadata: Option<Option<String>>,
}

/// Which assets a listing shows: newest first, after the page token (the last id shown).
#[derive(Default)]
pub struct AssetFilter<'a> {
    pub project_name: &'a str,
    pub group_id: Option<&'a str>,
    pub status: Option<MaterialStatus>,
    pub library_type: Option<LibraryType>,
    pub after: Option<&'a str>,
    pub limit: i64,
}

#[derive(Default)]
pub struct GroupFilter<'a> {
    pub project_name: &'a str,
    pub status: Option<GroupStatus>,
    pub library_type: Option<LibraryType>,
    pub after: Option<&'a str>,
    pub limit: i64,
}

/// How processing ended.
pub enum Processed {
    Active {
        content_type: String,
        size_bytes: i64,
    },
    Failed {
        message: String,
    },
}
