//! The model catalog (docs/models-and-pricing.md) as TOML data: models with their operations,
//! resolutions, durations, ratios, reference limits and prices, plus the output size table. The
//! built-in document is compiled in; a config file may replace it, and is checked just as strictly
//! (unknown keys, gaps and ambiguities are errors naming the key), because the parser and the
//! price table trust it blindly afterwards.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::date::CalendarDate;
use crate::job::{AspectRatio, Operation, OutputFormat, Resolution};

/// The catalog the binary ships with (`catalog.toml` at the crate root).
pub const BUILTIN_CATALOG: &str = include_str!("../catalog.toml");

/// How the tokens of a request are counted; shown in the Pricing API.
pub const TOKEN_FORMULA: &str =
    "output_tokens = floor(width * height * (24 * seconds + 1) / 1024); \
     input_tokens = floor(width * height * 24 * input_video_seconds / 1024) when video is an input";

/// A model's allowed durations in whole seconds.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DurationRange {
    /// Shortest request accepted.
    pub min: u32,
    /// Longest request accepted; also what `duration: -1` reserves for.
    pub max: u32,
    /// Used when a request names no duration.
    pub default: u32,
}

/// How many references of each kind one reference-to-video request may carry.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferenceLimits {
    /// Most `reference_images`.
    pub images: usize,
    /// Most `video_urls`.
    pub videos: usize,
    /// Most `audio_urls`.
    pub audios: usize,
}

/// How long each input clip (a video to edit or extend, a reference video or audio) may last,
/// and how long a request's reference videos, or its reference audios, may last together.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClipLimits {
    /// Shortest clip, in seconds.
    pub min_seconds: u32,
    /// Longest clip, in seconds.
    pub max_seconds: u32,
    /// Longest the reference videos, or the reference audios, may last in all.
    pub total_seconds: u32,
}

impl Default for ClipLimits {
    /// Seedance 2.0's: clips of 2–15 s, 15 s of each kind of reference in all.
    fn default() -> Self {
        ClipLimits {
            min_seconds: 2,
            max_seconds: 15,
            total_seconds: 15,
        }
    }
}

/// A model's draft mode: `draft: true` makes a quick, cheap preview at one resolution, billed
/// on its own at that resolution's price.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DraftSpec {
    /// The resolution every draft is made at.
    pub resolution: Resolution,
    /// How long after it is made a draft may be rendered as a final.
    pub valid_days: u32,
}

/// The prices of a group of resolutions, in CNY per million tokens. Written as strings in
/// the TOML (`"46"`) so they stay exact decimals.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceRow {
    /// The tiers this row prices; each of a model's tiers is in exactly one row.
    pub resolutions: Vec<Resolution>,
    /// The rate without video input.
    #[serde(with = "exact_decimal")]
    #[schema(value_type = String, example = "46")]
    pub cny_per_million: Decimal,
    /// The rate when any input is a video (charged on output + input tokens).
    #[serde(with = "exact_decimal")]
    #[schema(value_type = String, example = "28")]
    pub cny_per_million_video_input: Decimal,
    /// No published price could be confirmed; an operator should set it.
    #[serde(default)]
    pub provisional: bool,
}

/// One model, as the Models API shows it and the parser enforces it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The id clients send as `model`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// One line for humans.
    pub description: String,
    /// The date of the upstream model version: the Models API's `created` and
    /// `lifecycle.released_at`. Optional, so catalogs written before it still load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<CalendarDate>,
    /// The operations it serves.
    pub operations: Vec<Operation>,
    /// The resolutions it serves; anything else is `unsupported_resolution`.
    pub resolutions: Vec<Resolution>,
    /// Used when a request names no resolution.
    pub default_resolution: Resolution,
    /// The ratios it accepts; `adaptive`, the default, always among them.
    pub aspect_ratios: Vec<AspectRatio>,
    /// Accepted durations.
    pub duration: DurationRange,
    /// reference-to-video limits.
    pub reference_limits: ReferenceLimits,
    /// Price rows covering every resolution exactly once.
    pub prices: Vec<PriceRow>,
    /// Video-input requests are never billed below this many tokens.
    #[serde(default)]
    pub video_input_min_tokens: u64,
    /// The upstream's own ids for this model, which Ark clients send (the Ark-compatible
    /// surface takes them as this model).
    #[serde(default)]
    pub upstream_ids: Vec<String>,
    /// Input clip lengths (Seedance 2.0's when left out).
    #[serde(default)]
    pub input_clips: ClipLimits,
    /// The operations that take reference audio (`audio_urls`); reference-to-video alone when
    /// left out ([`ModelSpec::takes_audio`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_operations: Option<Vec<Operation>>,
    /// Whether reference-to-video may carry audio as its only reference; otherwise audio
    /// needs an image or video reference beside it.
    #[serde(default)]
    pub audio_only_references: bool,
    /// Operations whose output follows the input's shape: the request's ratio must be
    /// `adaptive` (the upstream refuses anything else with `TaskTypeConstraint`).
    #[serde(default)]
    pub adaptive_only_operations: Vec<Operation>,
    /// The containers a request may ask for as `output_format`; MP4 alone when left out.
    #[serde(default = "mp4_only")]
    pub output_formats: Vec<OutputFormat>,
    /// Its draft mode; none when left out (`draft: true` is then refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<DraftSpec>,
}

fn mp4_only() -> Vec<OutputFormat> {
    vec![OutputFormat::Mp4]
}

impl ModelSpec {
    /// Whether `operation` takes reference audio on this model.
    pub fn takes_audio(&self, operation: Operation) -> bool {
        match &self.audio_operations {
            Some(operations) => operations.contains(&operation),
            None => operation == Operation::ReferenceToVideo,
        }
    }

    /// Whether a request's ratio must be `adaptive` for `operation`.
    pub fn adaptive_only(&self, operation: Operation) -> bool {
        self.adaptive_only_operations.contains(&operation)
    }

    /// The price row of a tier; always `Some` for the model's own resolutions in a validated
    /// catalog.
    pub fn price_row(&self, resolution: Resolution) -> Option<&PriceRow> {
        self.prices
            .iter()
            .find(|p| p.resolutions.contains(&resolution))
    }
}

/// One billable row of the Pricing API.
#[derive(Clone, Debug, Serialize, PartialEq, ToSchema)]
pub struct PricingRow {
    /// Model id.
    pub model: String,
    /// Resolution tier.
    pub resolution: Resolution,
    /// Whether this is the rate for requests with a video input.
    pub video_input: bool,
    /// The configured rate, exact.
    #[schema(value_type = String)]
    pub cny_per_million_tokens: Decimal,
    /// CNY ÷ the rate, rounded to 6 decimals for display; bills use the unrounded quotient.
    #[schema(value_type = String)]
    pub usd_per_million_tokens: Decimal,
    /// The conversion rate (CNY per USD).
    #[schema(value_type = String)]
    pub cny_per_usd: Decimal,
    /// No published price backs this row.
    pub provisional: bool,
    /// How tokens are counted.
    pub token_formula: &'static str,
}

/// Amounts in the TOML: a string (`"46.5"`) or an integer, never a float, whose binary value
/// would not be the decimal the operator wrote. Serialized as a string.
mod exact_decimal {
    use std::fmt;
    use std::str::FromStr;

    use rust_decimal::Decimal;
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        struct Exact;
        impl Visitor<'_> for Exact {
            type Value = Decimal;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal amount as a string (\"46.5\") or an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
                Decimal::from_str(v.trim()).map_err(|e| E::custom(format!("`{v}`: {e}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
                Ok(Decimal::from(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
                Ok(Decimal::from(v))
            }
        }
        deserializer.deserialize_any(Exact)
    }
}

/// Output sizes: resolution → ratio name → `[width, height]`.
type SizeTable = BTreeMap<Resolution, BTreeMap<String, [u32; 2]>>;

/// The document as written. Ratio keys stay strings here so a bad one is reported by name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(with = "exact_decimal")]
    cny_per_usd: Decimal,
    #[serde(default)]
    prices_updated: Option<CalendarDate>,
    sizes: SizeTable,
    models: Vec<ModelSpec>,
}

/// Why a catalog document was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Not TOML, or not the schema (an unknown or missing key, a wrong type); the message
    /// names the key and line.
    #[error("the catalog does not match the schema: {0}")]
    Syntax(#[from] Box<toml::de::Error>),
    /// Well-formed but inconsistent.
    #[error("catalog key `{key}`: {reason}")]
    Invalid {
        /// Where, e.g. `models."seedance-2.0".prices`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> CatalogError {
    CatalogError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The validated catalog. Its serialized form is the TOML schema itself, so
/// `toml::to_string(&catalog)` gives a document `from_toml` reads back unchanged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Catalog {
    #[serde(with = "exact_decimal")]
    cny_per_usd: Decimal,
    #[serde(skip_serializing_if = "Option::is_none")]
    prices_updated: Option<CalendarDate>,
    sizes: SizeTable,
    models: Vec<ModelSpec>,
}

impl Catalog {
    /// The built-in catalog, read once per process: every server start and every request
    /// check in the tests asks for it. A unit test proves the document valid, so the panic is
    /// unreachable in a tested build.
    pub fn builtin() -> Catalog {
        static BUILTIN: std::sync::LazyLock<Catalog> =
            std::sync::LazyLock::new(|| match Catalog::from_toml(BUILTIN_CATALOG) {
                Ok(catalog) => catalog,
                Err(e) => panic!("the built-in catalog is invalid: {e}"),
            });
        BUILTIN.clone()
    }

    /// Parses and checks a catalog document: unknown keys (everywhere), a missing or doubled
    /// price, a missing or malformed size, duplicate ids or list entries, impossible ranges and
    /// defaults a model does not offer are all errors naming the key.
    pub fn from_toml(text: &str) -> Result<Catalog, CatalogError> {
        let file: CatalogFile = toml::from_str(text).map_err(Box::new)?;
        if file.cny_per_usd <= Decimal::ZERO {
            return Err(invalid("cny_per_usd", "must be positive"));
        }
        check_sizes(&file.sizes)?;
        if file.models.is_empty() {
            return Err(invalid("models", "the catalog needs at least one model"));
        }
        let mut ids = BTreeSet::new();
        for model in &file.models {
            if !ids.insert(model.id.as_str()) {
                return Err(invalid(
                    format!("models.\"{}\"", model.id),
                    "the id is listed twice",
                ));
            }
            check_model(model, &file.sizes)?;
        }
        Ok(Catalog {
            cny_per_usd: file.cny_per_usd,
            prices_updated: file.prices_updated,
            sizes: file.sizes,
            models: file.models,
        })
    }

    /// The model with this id.
    pub fn model(&self, id: &str) -> Option<&ModelSpec> {
        self.models.iter().find(|m| m.id == id)
    }

    /// A model by our id or by one of its upstream ids.
    pub fn model_or_upstream(&self, id: &str) -> Option<&ModelSpec> {
        self.model(id).or_else(|| {
            self.models
                .iter()
                .find(|m| m.upstream_ids.iter().any(|u| u == id))
        })
    }

    /// Every model, in catalog order.
    pub fn models(&self) -> &[ModelSpec] {
        &self.models
    }

    /// CNY per USD (6.8 built in); USD = CNY ÷ this.
    pub fn cny_per_usd(&self) -> Decimal {
        self.cny_per_usd
    }

    /// The date of the price list the rows come from, when the catalog gives one.
    pub fn prices_updated(&self) -> Option<CalendarDate> {
        self.prices_updated
    }

    /// Output `(width, height)` for a fixed ratio; `None` for `Adaptive` (which depends on the
    /// input) or a pair the table lacks.
    pub fn output_size(&self, resolution: Resolution, ratio: AspectRatio) -> Option<(u32, u32)> {
        let [w, h] = *self.sizes.get(&resolution)?.get(ratio.as_str())?;
        Some((w, h))
    }

    /// The largest-area output of a tier: what an `adaptive` request reserves for, since its
    /// ratio is only known once the input is read or the model has picked one.
    pub fn largest_size(&self, resolution: Resolution) -> Option<(u32, u32)> {
        AspectRatio::FIXED
            .into_iter()
            .filter_map(|r| self.output_size(resolution, r))
            .max_by_key(|(w, h)| u64::from(*w) * u64::from(*h))
    }

    /// For an `adaptive` request: the fixed ratio closest to an input of this size, measured
    /// on a log scale so 2:1 is as far from 1:1 as 1:2 is. Zero sides count as one pixel.
    pub fn closest_ratio(width: u32, height: u32) -> AspectRatio {
        let input = (f64::from(width.max(1)) / f64::from(height.max(1))).ln();
        let mut best = AspectRatio::W16H9;
        let mut best_distance = f64::INFINITY;
        for ratio in AspectRatio::FIXED {
            let Some(r) = ratio.ratio() else { continue };
            let distance = (r.ln() - input).abs();
            if distance < best_distance {
                best = ratio;
                best_distance = distance;
            }
        }
        best
    }

    /// Every billable row: model × resolution × (without, with) video input, in catalog order.
    pub fn pricing_rows(&self) -> Vec<PricingRow> {
        self.models
            .iter()
            .flat_map(|model| self.model_pricing_rows(model))
            .collect()
    }

    /// The billable rows of one model: resolution × (without, with) video input.
    pub fn model_pricing_rows(&self, model: &ModelSpec) -> Vec<PricingRow> {
        let mut rows = Vec::new();
        for &resolution in &model.resolutions {
            let Some(price) = model.price_row(resolution) else {
                continue;
            };
            for video_input in [false, true] {
                let cny = if video_input {
                    price.cny_per_million_video_input
                } else {
                    price.cny_per_million
                };
                rows.push(PricingRow {
                    model: model.id.clone(),
                    resolution,
                    video_input,
                    cny_per_million_tokens: cny,
                    usd_per_million_tokens: usd_per_million(cny, self.cny_per_usd),
                    cny_per_usd: self.cny_per_usd,
                    provisional: price.provisional,
                    token_formula: TOKEN_FORMULA,
                });
            }
        }
        rows
    }
}

/// `cny ÷ rate` to 6 decimals, always shown with 6 (`"6.764706"`, `"0.000000"`).
fn usd_per_million(cny: Decimal, cny_per_usd: Decimal) -> Decimal {
    let mut usd = cny
        .checked_div(cny_per_usd)
        .unwrap_or(Decimal::MAX)
        .round_dp_with_strategy(6, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    usd.rescale(6);
    usd
}

fn check_sizes(sizes: &SizeTable) -> Result<(), CatalogError> {
    for (resolution, by_ratio) in sizes {
        for (name, &[w, h]) in by_ratio {
            let key = format!("sizes.\"{resolution}\".\"{name}\"");
            let fixed = name
                .parse::<AspectRatio>()
                .ok()
                .and_then(AspectRatio::ratio);
            if fixed.is_none() {
                return Err(invalid(
                    key,
                    "not a fixed aspect ratio (16:9, 4:3, 1:1, 3:4, 9:16 or 21:9)",
                ));
            }
            // H.264 at 4:2:0 needs even sides; an odd size would fail only at render time.
            if w == 0 || h == 0 || w % 2 == 1 || h % 2 == 1 {
                return Err(invalid(key, "width and height must be even and positive"));
            }
        }
    }
    Ok(())
}

fn check_model(model: &ModelSpec, sizes: &SizeTable) -> Result<(), CatalogError> {
    let id = &model.id;
    let key = |field: &str| format!("models.\"{id}\".{field}");
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    {
        return Err(invalid(
            key("id"),
            "ids are non-empty and use only ASCII letters, digits, `-`, `.` and `_`",
        ));
    }
    no_duplicates(&model.operations, || key("operations"))?;
    no_duplicates(&model.resolutions, || key("resolutions"))?;
    no_duplicates(&model.aspect_ratios, || key("aspect_ratios"))?;
    if model.operations.is_empty() {
        return Err(invalid(key("operations"), "needs at least one operation"));
    }
    if model.resolutions.is_empty() {
        return Err(invalid(key("resolutions"), "needs at least one resolution"));
    }
    if !model.resolutions.contains(&model.default_resolution) {
        return Err(invalid(
            key("default_resolution"),
            format!("{} is not one of its resolutions", model.default_resolution),
        ));
    }
    let d = model.duration;
    if !(1 <= d.min && d.min <= d.default && d.default <= d.max) {
        return Err(invalid(key("duration"), "needs 1 <= min <= default <= max"));
    }
    let clips = model.input_clips;
    if !(1 <= clips.min_seconds
        && clips.min_seconds <= clips.max_seconds
        && clips.max_seconds <= clips.total_seconds)
    {
        return Err(invalid(
            key("input_clips"),
            "needs 1 <= min_seconds <= max_seconds <= total_seconds",
        ));
    }
    for (field, operations) in [
        (
            "audio_operations",
            model.audio_operations.as_deref().unwrap_or_default(),
        ),
        ("adaptive_only_operations", &model.adaptive_only_operations),
    ] {
        no_duplicates(operations, || key(field))?;
        if let Some(other) = operations.iter().find(|o| !model.operations.contains(o)) {
            return Err(invalid(
                key(field),
                format!("{other} is not one of its operations"),
            ));
        }
    }
    if let Some(draft) = model.draft {
        if !model.resolutions.contains(&draft.resolution) || draft.valid_days == 0 {
            return Err(invalid(
                key("draft"),
                "needs one of the model's resolutions and valid_days of at least 1",
            ));
        }
    }
    no_duplicates(&model.output_formats, || key("output_formats"))?;
    if !model.output_formats.contains(&OutputFormat::Mp4) {
        return Err(invalid(
            key("output_formats"),
            "must include mp4, what a request naming none gets",
        ));
    }
    if model.audio_only_references && !model.takes_audio(Operation::ReferenceToVideo) {
        return Err(invalid(
            key("audio_only_references"),
            "needs reference-to-video among its audio_operations",
        ));
    }
    // A request naming no ratio gets the default, so the model must offer it.
    if !model.aspect_ratios.contains(&AspectRatio::DEFAULT) {
        return Err(invalid(
            key("aspect_ratios"),
            format!(
                "must include {}, what a request naming no ratio gets",
                AspectRatio::DEFAULT
            ),
        ));
    }
    check_prices(model, &key("prices"))?;
    // `adaptive` may land on any fixed ratio, so it needs the whole row of sizes.
    let adaptive = model.aspect_ratios.contains(&AspectRatio::Adaptive);
    for &resolution in &model.resolutions {
        for ratio in AspectRatio::FIXED {
            let needed = adaptive || model.aspect_ratios.contains(&ratio);
            let present = sizes
                .get(&resolution)
                .is_some_and(|r| r.contains_key(ratio.as_str()));
            if needed && !present {
                return Err(invalid(
                    format!("sizes.\"{resolution}\".\"{ratio}\""),
                    format!("missing, and model {id} offers {resolution} at {ratio}"),
                ));
            }
        }
    }
    Ok(())
}

fn check_prices(model: &ModelSpec, key: &str) -> Result<(), CatalogError> {
    let mut priced = BTreeSet::new();
    for row in &model.prices {
        if row.resolutions.is_empty() {
            return Err(invalid(key, "a price row names no resolution"));
        }
        if row.cny_per_million < Decimal::ZERO || row.cny_per_million_video_input < Decimal::ZERO {
            return Err(invalid(key, "prices cannot be negative"));
        }
        for &resolution in &row.resolutions {
            if !model.resolutions.contains(&resolution) {
                return Err(invalid(
                    key,
                    format!("prices {resolution}, which the model does not offer"),
                ));
            }
            if !priced.insert(resolution) {
                return Err(invalid(key, format!("{resolution} is priced twice")));
            }
        }
    }
    if let Some(missing) = model.resolutions.iter().find(|r| !priced.contains(r)) {
        return Err(invalid(key, format!("no price for {missing}")));
    }
    Ok(())
}

fn no_duplicates<T: PartialEq + std::fmt::Display>(
    items: &[T],
    key: impl Fn() -> String,
) -> Result<(), CatalogError> {
    for (i, item) in items.iter().enumerate() {
        if items[..i].contains(item) {
            return Err(invalid(key(), format!("{item} is listed twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reject(text: &str) -> String {
        Catalog::from_toml(text).unwrap_err().to_string()
    }

    /// The built-in document with its first occurrence of `from` replaced.
    fn edited(from: &str, to: &str) -> String {
        assert!(BUILTIN_CATALOG.contains(from), "{from}");
        BUILTIN_CATALOG.replacen(from, to, 1)
    }

    #[test]
    fn builtin_catalog_has_the_four_models() {
        let c = Catalog::builtin();
        let ids: Vec<_> = c.models().iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "seedance-2.0",
                "seedance-2.0-fast",
                "seedance-2.0-mini",
                "seedance-2.5"
            ]
        );
        assert_eq!(
            c.model("seedance-2.0").unwrap().resolutions,
            Resolution::ALL
        );
        for id in ["seedance-2.0-fast", "seedance-2.0-mini"] {
            assert_eq!(
                c.model(id).unwrap().resolutions,
                [Resolution::P480, Resolution::P720]
            );
        }
        for m in c.models() {
            assert_eq!(m.operations, Operation::ALL);
            assert_eq!(m.aspect_ratios, AspectRatio::ALL);
            assert_eq!(m.default_resolution, Resolution::P720);
            assert_eq!(m.input_clips, ClipLimits::default());
        }
        for m in c.models().iter().filter(|m| m.id != "seedance-2.5") {
            assert_eq!(m.aspect_ratios, AspectRatio::ALL);
            assert_eq!(m.default_resolution, Resolution::P720);
            assert_eq!(
                m.duration,
                DurationRange {
                    min: 4,
                    max: 15,
                    default: 5
                }
            );
            assert_eq!(
                m.reference_limits,
                ReferenceLimits {
                    images: 9,
                    videos: 3,
                    audios: 3
                }
            );
        }
        assert_eq!(c.cny_per_usd(), Decimal::new(68, 1));
        assert!(c.model("seedance-9").is_none());
    }

    /// The output size table of docs/models-and-pricing.md.
    #[test]
    fn sizes_match_the_documented_table() {
        use AspectRatio::*;
        use Resolution::*;
        let table = [
            (W16H9, [(864, 496), (1280, 720), (1920, 1080), (3840, 2160)]),
            (W4H3, [(752, 560), (1112, 834), (1664, 1248), (3326, 2494)]),
            (W1H1, [(640, 640), (960, 960), (1440, 1440), (2880, 2880)]),
            (W3H4, [(560, 752), (834, 1112), (1248, 1664), (2494, 3326)]),
            (W9H16, [(496, 864), (720, 1280), (1080, 1920), (2160, 3840)]),
            (W21H9, [(992, 432), (1470, 630), (2206, 946), (4398, 1886)]),
        ];
        let c = Catalog::builtin();
        for (ratio, sizes) in table {
            for (resolution, size) in [P480, P720, P1080, K4].into_iter().zip(sizes) {
                assert_eq!(
                    c.output_size(resolution, ratio),
                    Some(size),
                    "{resolution} {ratio}"
                );
            }
        }
        assert_eq!(c.output_size(P720, Adaptive), None);
    }

    #[test]
    fn largest_size_is_the_largest_area_of_the_tier() {
        let c = Catalog::builtin();
        assert_eq!(c.largest_size(Resolution::P720), Some((834, 1112)));
        for r in Resolution::ALL {
            let (w, h) = c.largest_size(r).unwrap();
            for a in AspectRatio::FIXED {
                let (aw, ah) = c.output_size(r, a).unwrap();
                assert!(u64::from(aw) * u64::from(ah) <= u64::from(w) * u64::from(h));
            }
        }
    }

    /// The price table of docs/models-and-pricing.md.
    #[test]
    fn prices_match_the_documented_table() {
        let c = Catalog::builtin();
        let expect = [
            ("seedance-2.0", Resolution::P480, 46, 28, false),
            ("seedance-2.0", Resolution::P720, 46, 28, false),
            ("seedance-2.0", Resolution::P1080, 51, 31, false),
            ("seedance-2.0", Resolution::K4, 51, 31, true),
            ("seedance-2.0-fast", Resolution::P480, 37, 22, false),
            ("seedance-2.0-fast", Resolution::P720, 37, 22, false),
            ("seedance-2.0-mini", Resolution::P480, 37, 22, true),
            ("seedance-2.0-mini", Resolution::P720, 37, 22, true),
        ];
        for (model, resolution, plain, video, provisional) in expect {
            let row = c.model(model).unwrap().price_row(resolution).unwrap();
            assert_eq!(
                row.cny_per_million,
                Decimal::from(plain),
                "{model} {resolution}"
            );
            assert_eq!(row.cny_per_million_video_input, Decimal::from(video));
            assert_eq!(row.provisional, provisional, "{model} {resolution}");
        }
    }

    #[test]
    fn pricing_rows_cover_every_model_resolution_and_video_input() {
        let c = Catalog::builtin();
        let rows = c.pricing_rows();
        // seedance-2.0: 4 tiers, fast: 2, mini: 2, 2.5: 3; each with and without video input.
        assert_eq!(rows.len(), (4 + 2 + 2 + 3) * 2);
        for model in c.models() {
            for &resolution in &model.resolutions {
                for video_input in [false, true] {
                    let n = rows
                        .iter()
                        .filter(|r| {
                            r.model == model.id
                                && r.resolution == resolution
                                && r.video_input == video_input
                        })
                        .count();
                    assert_eq!(n, 1, "{} {resolution} {video_input}", model.id);
                }
            }
        }
        assert!(!rows
            .iter()
            .any(|r| r.model == "seedance-2.0-fast" && r.resolution == Resolution::P1080));
    }

    #[test]
    fn pricing_rows_usd_is_cny_over_6_8() {
        let rows = Catalog::builtin().pricing_rows();
        for row in &rows {
            assert_eq!(row.cny_per_usd, Decimal::new(68, 1));
            let exact = row.cny_per_million_tokens / Decimal::new(68, 1);
            assert_eq!(row.usd_per_million_tokens, exact.round_dp(6));
            assert_eq!(row.usd_per_million_tokens.scale(), 6);
            assert_eq!(row.token_formula, TOKEN_FORMULA);
        }
        let find = |model: &str, res, video| {
            rows.iter()
                .find(|r| r.model == model && r.resolution == res && r.video_input == video)
                .unwrap()
                .usd_per_million_tokens
                .to_string()
        };
        assert_eq!(find("seedance-2.0", Resolution::P720, false), "6.764706");
        assert_eq!(find("seedance-2.0", Resolution::P1080, true), "4.558824");
        assert_eq!(
            find("seedance-2.0-fast", Resolution::P480, true),
            "3.235294"
        );
        let json = serde_json::to_value(&rows[0]).unwrap();
        assert_eq!(json["cny_per_million_tokens"], "46");
        assert_eq!(json["usd_per_million_tokens"], "6.764706");
        assert_eq!(json["resolution"], "480p");
    }

    #[test]
    fn provisional_rows_are_the_unpublished_prices() {
        for row in Catalog::builtin().pricing_rows() {
            let unpublished = row.model == "seedance-2.0-mini"
                || row.model == "seedance-2.5"
                || row.resolution == Resolution::K4;
            assert_eq!(row.provisional, unpublished, "{row:?}");
        }
    }

    #[test]
    fn seedance_2_5_has_its_own_limits() {
        let c = Catalog::builtin();
        let m = c.model("seedance-2.5").unwrap();
        assert_eq!(
            m.upstream_ids,
            ["doubao-seedance-2-5-260628", "dreamina-seedance-2-5-260628"]
        );
        assert_eq!(
            c.model_or_upstream("dreamina-seedance-2-5-260628")
                .unwrap()
                .id,
            "seedance-2.5"
        );
        assert_eq!(
            m.resolutions,
            [Resolution::P480, Resolution::P720, Resolution::P1080]
        );
        assert_eq!((m.duration.min, m.duration.max), (4, 30));
        assert_eq!(
            m.reference_limits,
            ReferenceLimits {
                images: 30,
                videos: 10,
                audios: 10
            }
        );
        assert!(m.audio_only_references);
        assert_eq!(
            m.draft,
            Some(DraftSpec {
                resolution: Resolution::P480,
                valid_days: 7
            })
        );
        assert_eq!(
            m.adaptive_only_operations,
            [
                Operation::ImageToVideo,
                Operation::StartEndToVideo,
                Operation::VideoToVideo,
                Operation::VideoExtension
            ]
        );
        for m in c.models() {
            let takers: Vec<_> = Operation::ALL
                .into_iter()
                .filter(|o| m.takes_audio(*o))
                .collect();
            assert_eq!(takers, [Operation::ReferenceToVideo], "{}", m.id);
        }
    }

    #[test]
    fn the_data_driven_rules_are_checked_when_the_catalog_loads() {
        let model = "video_input_min_tokens = 0\n\n[[models.prices]]\nresolutions = [\"480p\", \"720p\"]\ncny_per_million = \"37\"";
        for (added, key, reason) in [
            (
                "input_clips = { min_seconds = 5, max_seconds = 4, total_seconds = 15 }\n",
                "input_clips",
                "min_seconds <= max_seconds",
            ),
            (
                "input_clips = { min_seconds = 2, max_seconds = 15, total_seconds = 10 }\n",
                "input_clips",
                "max_seconds <= total_seconds",
            ),
            (
                "audio_operations = [\"reference-to-video\", \"reference-to-video\"]\n",
                "audio_operations",
                "twice",
            ),
            (
                "audio_operations = [\"text-to-video\"]\naudio_only_references = true\n",
                "audio_only_references",
                "reference-to-video",
            ),
            (
                "draft = { resolution = \"1080p\", valid_days = 7 }\n",
                "draft",
                "resolutions",
            ),
            (
                "draft = { resolution = \"480p\", valid_days = 0 }\n",
                "draft",
                "valid_days",
            ),
        ] {
            let text = edited(model, &format!("{added}{model}"));
            let err = Catalog::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(reason), "{added}: {err}");
        }
        let narrow = edited(
            "operations = [\"text-to-video\", \"image-to-video\", \"start-end-to-video\", \"reference-to-video\", \"video-to-video\", \"video-extension\"]\nresolutions = [\"480p\", \"720p\"]",
            "operations = [\"text-to-video\"]\nadaptive_only_operations = [\"image-to-video\"]\nresolutions = [\"480p\", \"720p\"]",
        );
        let err = Catalog::from_toml(&narrow).unwrap_err().to_string();
        assert!(
            err.contains("adaptive_only_operations") && err.contains("not one of its operations"),
            "{err}"
        );
    }

    #[test]
    fn closest_ratio_follows_the_input() {
        assert_eq!(Catalog::closest_ratio(1920, 1080), AspectRatio::W16H9);
        assert_eq!(Catalog::closest_ratio(400, 720), AspectRatio::W9H16);
        assert_eq!(Catalog::closest_ratio(500, 500), AspectRatio::W1H1);
        assert_eq!(Catalog::closest_ratio(2560, 1080), AspectRatio::W21H9);
        assert_eq!(Catalog::closest_ratio(600, 800), AspectRatio::W3H4);
        assert_eq!(Catalog::closest_ratio(1024, 768), AspectRatio::W4H3);
        assert_eq!(Catalog::closest_ratio(10_000, 1), AspectRatio::W21H9);
        assert_eq!(Catalog::closest_ratio(0, 0), AspectRatio::W1H1);
    }

    #[test]
    fn every_size_is_closest_to_its_own_ratio() {
        let c = Catalog::builtin();
        for r in Resolution::ALL {
            for a in AspectRatio::FIXED {
                let (w, h) = c.output_size(r, a).unwrap();
                assert_eq!(Catalog::closest_ratio(w, h), a, "{r} {a}");
            }
        }
    }

    #[test]
    fn catalog_toml_round_trips() {
        let c = Catalog::builtin();
        let text = toml::to_string(&c).unwrap();
        let back = Catalog::from_toml(&text).unwrap();
        assert_eq!(back, c);
        assert_eq!(toml::to_string(&back).unwrap(), text);
    }

    #[test]
    fn catalog_serializes_to_json_for_the_models_api() {
        let json = serde_json::to_value(Catalog::builtin()).unwrap();
        assert_eq!(json["cny_per_usd"], "6.8");
        assert_eq!(
            json["sizes"]["720p"]["16:9"],
            serde_json::json!([1280, 720])
        );
        assert_eq!(json["models"][0]["prices"][0]["cny_per_million"], "46");
        assert_eq!(json["models"][0]["duration"]["max"], 15);
    }

    #[test]
    fn override_with_unknown_key_is_rejected() {
        // At the top level, in a model, in a price row and in an inline table.
        for (from, to, name) in [
            (
                "cny_per_usd = ",
                "currency = \"CNY\"\ncny_per_usd = ",
                "currency",
            ),
            (
                "video_input_min_tokens = 0",
                "video_input_min_tokenz = 0",
                "video_input_min_tokenz",
            ),
            (
                "cny_per_million = \"46\"",
                "cny_per_million = \"46\"\ndiscount = \"1\"",
                "discount",
            ),
            ("max = 15,", "max = 15, maximum = 15,", "maximum"),
            ("audios = 3 }", "audios = 3, voices = 1 }", "voices"),
        ] {
            let err = Catalog::from_toml(&edited(from, to)).unwrap_err();
            assert!(matches!(err, CatalogError::Syntax(_)), "{err}");
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn prices_are_exact_strings_or_integers_never_floats() {
        let c = Catalog::from_toml(&edited("cny_per_million = \"46\"", "cny_per_million = 46"))
            .unwrap();
        assert_eq!(c.models()[0].prices[0].cny_per_million, Decimal::from(46));
        let c = Catalog::from_toml(&edited(
            "cny_per_million = \"46\"",
            "cny_per_million = \"46.15\"",
        ))
        .unwrap();
        assert_eq!(
            c.models()[0].prices[0].cny_per_million,
            Decimal::new(4615, 2)
        );
        let err = reject(&edited(
            "cny_per_million = \"46\"",
            "cny_per_million = 46.15",
        ));
        assert!(
            err.contains("cny_per_million") && err.contains("string"),
            "{err}"
        );
        let err = reject(&edited(
            "cny_per_million = \"46\"",
            "cny_per_million = \"4 6\"",
        ));
        assert!(err.contains("cny_per_million"), "{err}");
    }

    #[test]
    fn override_with_wrong_types_is_rejected() {
        assert!(reject(&edited("\"720p\", \"1080p\"", "\"720p\", \"8k\"")).contains("8k"));
        assert!(
            reject(&edited("\"text-to-video\",", "\"text-to-image\",")).contains("text-to-image")
        );
    }

    #[test]
    fn override_missing_a_price_is_rejected() {
        let text = edited(
            "resolutions = [\"480p\", \"720p\"]\ncny_per_million = \"46\"",
            "resolutions = [\"480p\"]\ncny_per_million = \"46\"",
        );
        assert_eq!(
            reject(&text),
            "catalog key `models.\"seedance-2.0\".prices`: no price for 720p"
        );
    }

    #[test]
    fn override_pricing_a_tier_twice_or_one_not_offered_is_rejected() {
        let twice = edited(
            "resolutions = [\"1080p\"]",
            "resolutions = [\"1080p\", \"720p\"]",
        );
        assert!(reject(&twice).contains("720p is priced twice"));
        let fast = BUILTIN_CATALOG.find("id = \"seedance-2.0-fast\"").unwrap();
        let (head, tail) = BUILTIN_CATALOG.split_at(fast);
        let tail = tail.replacen(
            "resolutions = [\"480p\", \"720p\"]\ncny_per_million",
            "resolutions = [\"480p\", \"720p\", \"1080p\"]\ncny_per_million",
            1,
        );
        let err = reject(&format!("{head}{tail}"));
        assert!(
            err.contains("seedance-2.0-fast") && err.contains("1080p"),
            "{err}"
        );
    }

    #[test]
    fn override_with_negative_price_is_rejected() {
        let text = edited("cny_per_million = \"46\"", "cny_per_million = \"-46\"");
        assert!(reject(&text).contains("negative"));
    }

    #[test]
    fn override_missing_a_size_is_rejected() {
        let text = edited("\"21:9\" = [1470, 630]\n", "");
        let err = reject(&text);
        assert!(err.contains("sizes.\"720p\".\"21:9\""), "{err}");
    }

    #[test]
    fn override_with_bad_sizes_is_rejected() {
        assert!(reject(&edited("\"16:9\" = [864, 496]", "\"5:4\" = [864, 496]")).contains("5:4"));
        assert!(reject(&edited(
            "\"16:9\" = [864, 496]",
            "\"adaptive\" = [864, 496]"
        ))
        .contains("adaptive"));
        assert!(reject(&edited("\"16:9\" = [864, 496]", "\"16:9\" = [865, 496]")).contains("even"));
    }

    #[test]
    fn override_with_inconsistent_model_is_rejected() {
        let cases = [
            ("max = 15, default = 5", "max = 15, default = 20", "duration"),
            ("min = 4,", "min = 0,", "duration"),
            ("\"21:9\", \"adaptive\"]", "\"21:9\"]", "aspect_ratios"),
            ("resolutions = [\"480p\", \"720p\", \"1080p\", \"4k\"]", "resolutions = [\"480p\", \"720p\", \"1080p\", \"4k\", \"4k\"]", "4k is listed twice"),
            ("id = \"seedance-2.0\"", "id = \"seedance 2.0\"", "id"),
            ("operations = [\"text-to-video\", \"image-to-video\", \"start-end-to-video\", \"reference-to-video\", \"video-to-video\", \"video-extension\"]", "operations = []", "operations"),
        ];
        for (from, to, needle) in cases {
            let err = reject(&edited(from, to));
            assert!(err.contains(needle), "{to}: {err}");
        }
        // Only `adaptive` is a default, so a model may leave out any other ratio.
        assert!(Catalog::from_toml(&edited("[\"16:9\", \"4:3\",", "[\"4:3\",")).is_ok());
        let fast = BUILTIN_CATALOG.find("id = \"seedance-2.0-fast\"").unwrap();
        let (head, tail) = BUILTIN_CATALOG.split_at(fast);
        let tail = tail.replacen(
            "default_resolution = \"720p\"",
            "default_resolution = \"1080p\"",
            1,
        );
        let err = reject(&format!("{head}{tail}"));
        assert!(
            err.contains("default_resolution") && err.contains("1080p"),
            "{err}"
        );
    }

    #[test]
    fn override_with_no_models_or_a_bad_rate_is_rejected() {
        let start = BUILTIN_CATALOG.find("[[models]]").unwrap();
        assert!(reject(&format!("{}models = []\n", &BUILTIN_CATALOG[..start])).contains("models"));
        assert!(
            reject(&edited("cny_per_usd = \"6.8\"", "cny_per_usd = \"0\"")).contains("cny_per_usd")
        );
    }

    #[test]
    fn duplicate_model_ids_are_rejected() {
        let start = BUILTIN_CATALOG.find("[[models]]").unwrap();
        let end = BUILTIN_CATALOG[start + 1..].find("[[models]]").unwrap() + start + 1;
        let text = format!("{BUILTIN_CATALOG}\n{}", &BUILTIN_CATALOG[start..end]);
        assert_eq!(
            reject(&text),
            "catalog key `models.\"seedance-2.0\"`: the id is listed twice"
        );
    }

    #[test]
    fn dates_are_the_price_list_and_the_upstream_versions() {
        let c = Catalog::builtin();
        assert_eq!(c.prices_updated().unwrap().to_string(), "2026-01-28");
        for model in c.models() {
            let released = model.released.unwrap();
            // The date is the YYMMDD suffix of every upstream id.
            let suffix = released.to_string().replace('-', "")[2..].to_owned();
            for upstream in &model.upstream_ids {
                assert!(upstream.ends_with(&suffix), "{upstream} {released}");
            }
        }
    }

    #[test]
    fn dates_are_optional_but_checked() {
        let undated = BUILTIN_CATALOG
            .lines()
            .filter(|line| !line.starts_with("released =") && !line.starts_with("prices_updated ="))
            .collect::<Vec<_>>()
            .join("\n");
        let c = Catalog::from_toml(&undated).unwrap();
        assert_eq!(c.prices_updated(), None);
        assert!(c.models().iter().all(|m| m.released.is_none()));
        let err = reject(&edited(
            "released = \"2026-01-28\"",
            "released = \"2026-02-30\"",
        ));
        assert!(
            err.contains("released") && err.contains("2026-02-30"),
            "{err}"
        );
        let err = reject(&edited(
            "prices_updated = \"2026-01-28\"",
            "prices_updated = 2026-01-28",
        ));
        assert!(err.contains("prices_updated"), "{err}");
    }

    #[test]
    fn a_new_model_is_configuration() {
        let extra = "\n[[models]]\nid = \"seedance-3.0\"\nname = \"Seedance 3.0\"\ndescription = \"next\"\n\
            operations = [\"text-to-video\"]\nresolutions = [\"720p\"]\ndefault_resolution = \"720p\"\n\
            aspect_ratios = [\"16:9\", \"adaptive\"]\nduration = { min = 4, max = 10, default = 5 }\n\
            reference_limits = { images = 4, videos = 1, audios = 1 }\n\
            [[models.prices]]\nresolutions = [\"720p\"]\ncny_per_million = \"60.5\"\ncny_per_million_video_input = \"40\"\n";
        let c = Catalog::from_toml(&format!("{BUILTIN_CATALOG}{extra}")).unwrap();
        let m = c.model("seedance-3.0").unwrap();
        assert_eq!(m.duration.max, 10);
        assert_eq!(m.video_input_min_tokens, 0);
        assert_eq!(
            m.price_row(Resolution::P720).unwrap().cny_per_million,
            Decimal::new(605, 1)
        );
        assert_eq!(c.pricing_rows().len(), 22 + 2);
    }
}
