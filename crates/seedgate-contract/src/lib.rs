//! Seedgate's request contract, free of I/O: the model catalog, the parsing of a create request
//! with every fail-closed rule and its stable error code, the token estimator and the prices.
//! Everything the server does starts from a [`VideoJob`] this crate produced.

pub mod catalog;
pub mod error;
pub mod job;
pub mod parse;
pub mod pricing;

#[cfg(test)]
mod parse_tests;

pub use catalog::{
    Catalog, CatalogError, DurationRange, ModelSpec, PriceRow, PricingRow, ReferenceLimits,
};
pub use error::{ApiError, ErrorType};
pub use job::{
    AspectRatio, DurationRequest, JobInputs, MediaInput, Operation, Resolution, VideoJob,
};
pub use parse::parse_create_request;
