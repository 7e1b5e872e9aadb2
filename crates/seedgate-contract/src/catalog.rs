//! The model catalog (SPEC §1, §4) as TOML data: models, their operations, resolutions,
//! durations, ratios, reference limits and prices, plus the output size table. Built into the
//! binary and replaceable by configuration.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::job::{AspectRatio, Operation, Resolution};

/// The catalog the binary ships with.
pub const BUILTIN_CATALOG: &str = include_str!("../catalog.toml");

/// How the tokens of a request are counted; shown in the Pricing API.
pub const TOKEN_FORMULA: &str =
    "output_tokens = floor(width * height * (24 * seconds + 1) / 1024); \
     input_tokens = floor(width * height * 24 * input_video_seconds / 1024) when video is an input";

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DurationRange {
    pub min: u32,
    pub max: u32,
    pub default: u32,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReferenceLimits {
    pub images: usize,
    pub videos: usize,
    pub audios: usize,
}

/// Prices of a group of resolutions, in CNY per million tokens.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PriceRow {
    pub resolutions: Vec<Resolution>,
    #[serde(with = "rust_decimal::serde::str")]
    pub cny_per_million: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub cny_per_million_video_input: Decimal,
    /// No published price could be confirmed; an operator should set it.
    #[serde(default)]
    pub provisional: bool,
}

/// One model as the Models API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub id: String,
    pub name: String,
    pub description: String,
    pub operations: Vec<Operation>,
    pub resolutions: Vec<Resolution>,
    pub default_resolution: Resolution,
    pub aspect_ratios: Vec<AspectRatio>,
    pub duration: DurationRange,
    pub reference_limits: ReferenceLimits,
    pub prices: Vec<PriceRow>,
    /// Video-input requests are never billed below this many tokens.
    #[serde(default)]
    pub video_input_min_tokens: u64,
}

impl ModelSpec {
    pub fn price_row(&self, resolution: Resolution) -> Option<&PriceRow> {
        self.prices
            .iter()
            .find(|p| p.resolutions.contains(&resolution))
    }
}

/// One billable row of the Pricing API.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PricingRow {
    pub model: String,
    pub resolution: Resolution,
    pub video_input: bool,
    pub cny_per_million_tokens: Decimal,
    /// CNY ÷ the rate, rounded to 6 decimals for display; bills use the unrounded value.
    pub usd_per_million_tokens: Decimal,
    pub cny_per_usd: Decimal,
    pub provisional: bool,
    pub token_formula: &'static str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(with = "rust_decimal::serde::str")]
    cny_per_usd: Decimal,
    sizes: BTreeMap<Resolution, BTreeMap<String, [u32; 2]>>,
    models: Vec<ModelSpec>,
}

/// Why a catalog document was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog is not valid TOML for the schema: {0}")]
    Syntax(#[from] Box<toml::de::Error>),
    #[error("catalog: {0}")]
    Invalid(String),
}

/// The validated catalog.
#[derive(Clone, Debug, Serialize)]
pub struct Catalog {
    cny_per_usd: Decimal,
    sizes: BTreeMap<(Resolution, String), (u32, u32)>,
    models: Vec<ModelSpec>,
}

impl Catalog {
    /// The built-in catalog (unit tests prove it parses).
    pub fn builtin() -> Catalog {
        match Catalog::from_toml(BUILTIN_CATALOG) {
            Ok(catalog) => catalog,
            Err(e) => panic!("the built-in catalog is invalid: {e}"),
        }
    }

    /// Parses and checks a catalog: unknown keys, missing prices or sizes, duplicate ids and
    /// impossible ranges are errors naming the model.
    pub fn from_toml(text: &str) -> Result<Catalog, CatalogError> {
        let file: CatalogFile = toml::from_str(text).map_err(Box::new)?;
        let invalid = |m: String| Err(CatalogError::Invalid(m));
        if file.cny_per_usd <= Decimal::ZERO {
            return invalid("cny_per_usd must be positive".into());
        }
        let mut sizes = BTreeMap::new();
        for (resolution, by_ratio) in file.sizes {
            for (ratio, [w, h]) in by_ratio {
                if ratio
                    .parse::<AspectRatio>()
                    .ok()
                    .and_then(AspectRatio::ratio)
                    .is_none()
                {
                    return invalid(format!(
                        "sizes.{}: unknown ratio {ratio}",
                        resolution.as_str()
                    ));
                }
                if w == 0 || h == 0 || w % 2 == 1 || h % 2 == 1 {
                    return invalid(format!(
                        "sizes.{}.{ratio}: width and height must be even and positive",
                        resolution.as_str()
                    ));
                }
                sizes.insert((resolution, ratio), (w, h));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for model in &file.models {
            let id = &model.id;
            if !seen.insert(id.clone()) {
                return invalid(format!("model {id} is listed twice"));
            }
            let d = model.duration;
            if !(1 <= d.min && d.min <= d.default && d.default <= d.max) {
                return invalid(format!(
                    "model {id}: duration needs 1 <= min <= default <= max"
                ));
            }
            if !model.resolutions.contains(&model.default_resolution) {
                return invalid(format!(
                    "model {id}: default_resolution is not one of its resolutions"
                ));
            }
            if model.operations.is_empty() || model.resolutions.is_empty() {
                return invalid(format!("model {id}: needs operations and resolutions"));
            }
            for resolution in &model.resolutions {
                if model.price_row(*resolution).is_none() {
                    return invalid(format!("model {id}: no price for {}", resolution.as_str()));
                }
                for ratio in AspectRatio::FIXED {
                    if model.aspect_ratios.contains(&ratio)
                        && !sizes.contains_key(&(*resolution, ratio.as_str().to_owned()))
                    {
                        return invalid(format!(
                            "model {id}: no size for {} at {}",
                            resolution.as_str(),
                            ratio.as_str()
                        ));
                    }
                }
            }
        }
        Ok(Catalog {
            cny_per_usd: file.cny_per_usd,
            sizes,
            models: file.models,
        })
    }

    pub fn model(&self, id: &str) -> Option<&ModelSpec> {
        self.models.iter().find(|m| m.id == id)
    }

    pub fn models(&self) -> &[ModelSpec] {
        &self.models
    }

    pub fn cny_per_usd(&self) -> Decimal {
        self.cny_per_usd
    }

    /// Output (width, height) for a fixed ratio; None for `adaptive` or an unknown pair.
    pub fn output_size(&self, resolution: Resolution, ratio: AspectRatio) -> Option<(u32, u32)> {
        self.sizes
            .get(&(resolution, ratio.as_str().to_owned()))
            .copied()
    }

    /// The largest output at a resolution: what an `adaptive` request reserves for.
    pub fn largest_size(&self, resolution: Resolution) -> Option<(u32, u32)> {
        AspectRatio::FIXED
            .into_iter()
            .filter_map(|r| self.output_size(resolution, r))
            .max_by_key(|(w, h)| u64::from(*w) * u64::from(*h))
    }

    /// For an `adaptive` request: the fixed ratio closest to an input of this size.
    pub fn closest_ratio(width: u32, height: u32) -> AspectRatio {
        let input = f64::from(width.max(1)) / f64::from(height.max(1));
        let mut best = AspectRatio::W16H9;
        let mut best_distance = f64::MAX;
        for ratio in AspectRatio::FIXED {
            let distance = (ratio.ratio().unwrap_or(1.0).ln() - input.ln()).abs();
            if distance < best_distance {
                best = ratio;
                best_distance = distance;
            }
        }
        best
    }

    /// Every billable row: model × resolution × with/without video input.
    pub fn pricing_rows(&self) -> Vec<PricingRow> {
        let mut rows = Vec::new();
        for model in &self.models {
            for resolution in &model.resolutions {
                let Some(price) = model.price_row(*resolution) else {
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
                        resolution: *resolution,
                        video_input,
                        cny_per_million_tokens: cny,
                        usd_per_million_tokens: (cny / self.cny_per_usd).round_dp(6),
                        cny_per_usd: self.cny_per_usd,
                        provisional: price.provisional,
                        token_formula: TOKEN_FORMULA,
                    });
                }
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_has_the_three_models() {
        let c = Catalog::builtin();
        let ids: Vec<_> = c.models().iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            ["seedance-2.0", "seedance-2.0-fast", "seedance-2.0-mini"]
        );
        let fast = c.model("seedance-2.0-fast").unwrap();
        assert_eq!(fast.resolutions, [Resolution::P480, Resolution::P720]);
        assert_eq!(c.model("seedance-2.0").unwrap().resolutions.len(), 4);
        for m in c.models() {
            assert_eq!(m.operations.len(), 6);
            assert_eq!(
                m.duration,
                DurationRange {
                    min: 4,
                    max: 15,
                    default: 5
                }
            );
        }
    }

    #[test]
    fn sizes_match_the_spec_table() {
        let c = Catalog::builtin();
        assert_eq!(
            c.output_size(Resolution::P720, AspectRatio::W16H9),
            Some((1280, 720))
        );
        assert_eq!(
            c.output_size(Resolution::P480, AspectRatio::W9H16),
            Some((496, 864))
        );
        assert_eq!(
            c.output_size(Resolution::K4, AspectRatio::W21H9),
            Some((4398, 1886))
        );
        assert_eq!(
            c.output_size(Resolution::P1080, AspectRatio::W4H3),
            Some((1664, 1248))
        );
        assert_eq!(c.output_size(Resolution::P720, AspectRatio::Adaptive), None);
        assert_eq!(c.largest_size(Resolution::P720), Some((834, 1112)));
    }

    #[test]
    fn pricing_rows_convert_at_6_8() {
        let c = Catalog::builtin();
        let rows = c.pricing_rows();
        assert_eq!(rows.len(), 16);
        let row = rows
            .iter()
            .find(|r| {
                r.model == "seedance-2.0" && r.resolution == Resolution::P1080 && r.video_input
            })
            .unwrap();
        assert_eq!(row.cny_per_million_tokens, Decimal::from(31));
        assert_eq!(row.usd_per_million_tokens.to_string(), "4.558824");
        assert!(rows
            .iter()
            .filter(|r| r.provisional)
            .all(|r| r.model == "seedance-2.0-mini" || r.resolution == Resolution::K4));
        assert!(!rows
            .iter()
            .any(|r| r.model == "seedance-2.0-fast" && r.resolution == Resolution::P1080));
    }

    #[test]
    fn closest_ratio_follows_the_input() {
        assert_eq!(Catalog::closest_ratio(1920, 1080), AspectRatio::W16H9);
        assert_eq!(Catalog::closest_ratio(400, 720), AspectRatio::W9H16);
        assert_eq!(Catalog::closest_ratio(500, 500), AspectRatio::W1H1);
        assert_eq!(Catalog::closest_ratio(2560, 1080), AspectRatio::W21H9);
        assert_eq!(Catalog::closest_ratio(600, 800), AspectRatio::W3H4);
    }

    #[test]
    fn override_with_unknown_key_is_rejected() {
        let text =
            BUILTIN_CATALOG.replace("video_input_min_tokens = 0", "video_input_min_tokenz = 0");
        assert!(matches!(
            Catalog::from_toml(&text),
            Err(CatalogError::Syntax(_))
        ));
    }

    #[test]
    fn override_missing_a_price_is_rejected() {
        let text = BUILTIN_CATALOG.replacen(
            "resolutions = [\"480p\", \"720p\"]\ncny_per_million = \"46\"",
            "resolutions = [\"480p\"]\ncny_per_million = \"46\"",
            1,
        );
        let err = Catalog::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("no price for 720p"), "{err}");
    }

    #[test]
    fn a_new_model_is_configuration() {
        let extra = "\n[[models]]\nid = \"seedance-2.5\"\nname = \"Seedance 2.5\"\ndescription = \"next\"\n\
            operations = [\"text-to-video\"]\nresolutions = [\"720p\"]\ndefault_resolution = \"720p\"\n\
            aspect_ratios = [\"16:9\"]\nduration = { min = 4, max = 10, default = 5 }\n\
            reference_limits = { images = 4, videos = 1, audios = 1 }\n\
            [[models.prices]]\nresolutions = [\"720p\"]\ncny_per_million = \"60\"\ncny_per_million_video_input = \"40\"\n";
        let c = Catalog::from_toml(&format!("{BUILTIN_CATALOG}{extra}")).unwrap();
        assert_eq!(c.model("seedance-2.5").unwrap().duration.max, 10);
    }

    #[test]
    fn duplicate_model_ids_are_rejected() {
        let start = BUILTIN_CATALOG.find("[[models]]").unwrap();
        let end = BUILTIN_CATALOG[start + 1..].find("[[models]]").unwrap() + start + 1;
        let text = format!("{BUILTIN_CATALOG}\n{}", &BUILTIN_CATALOG[start..end]);
        assert!(Catalog::from_toml(&text)
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }
}
