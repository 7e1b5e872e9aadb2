#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod catalog;
pub mod date;
pub mod drafts;
pub mod error;
pub mod job;
pub mod parse;
pub mod pricing;
mod prompt_commands;
pub mod request_schema;
pub mod scenario;

#[cfg(test)]
mod parse_props;
#[cfg(test)]
mod parse_tests;

pub use catalog::{
    Catalog, CatalogError, ClipLimits, DraftSpec, DurationRange, ModelSpec, PriceRow, PricingRow,
    ReferenceLimits, BUILTIN_CATALOG,
};
pub use date::CalendarDate;
pub use drafts::{DraftSource, DraftState, DraftUpstream, FinalRequest};
pub use error::{ApiError, ErrorBody, ErrorCode, ErrorObject, ErrorType};
pub use job::{
    AspectRatio, DurationRequest, InputSummary, JobInputs, MediaInput, Operation, OutputFormat,
    RequestEcho, Resolution, ServiceTier, UnknownVariant, VideoJob, WebhookFormat,
};
pub use parse::{check_image_dimensions, parse_create_request, CreateRequest};
pub use pricing::{Money, Quote, TokenCeiling};
pub use request_schema::CreateVideoRequest;
pub use scenario::{SandboxScenario, SCENARIO_HEADER};
