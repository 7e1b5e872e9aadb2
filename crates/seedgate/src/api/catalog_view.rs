//! The bodies of the Models and Pricing APIs, in the platform's shapes (its `Model`,
//! `ModelsResponse`, `CompactModelsResponse`, `ModelPricingResponse` and `PricingResponse`), so
//! its clients read us unchanged. The platform's fields are filled from the catalog; where a
//! shape takes extra fields (a model's `tokenlab`, the pricing objects), our own details ride
//! along: limits, and price rows in CNY and USD as exact decimal strings.
//!
//! Every value here is derived from the catalog once, at start-up (`CatalogBodies::render`).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use seedgate_contract::date::rfc3339;
use seedgate_contract::parse::FIELDS;
use seedgate_contract::pricing::token_ceiling;
use seedgate_contract::{
    AspectRatio, Catalog, ClipLimits, DraftSpec, DurationRange, ModelSpec, Operation, OutputFormat,
    PriceRow, PricingRow, ReferenceLimits, Resolution,
};
use serde::Serialize;
use utoipa::openapi::schema::{OneOfBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// Every catalog model is ByteDance's: the `owned_by`, `provider` and `?provider=` value.
pub const PROVIDER: &str = "bytedance";
/// Every operation of the contract makes a video, so every catalog model is in this category.
pub const CATEGORY: &str = "video";
/// Where every model's tasks are created, whatever the operation.
const REQUEST_ENDPOINT: &str = "/v1/videos/generations";
/// Prices are per million tokens.
const PRICING_UNIT: &str = "per_1m_tokens";
/// The catalog holds the models this gateway serves and no lifecycle data, so every model is
/// `active`, none is announced as deprecated or retired.
const STAGE: &str = "active";

/// What one model's entries are made from, derived once.
pub struct ModelFacts<'a> {
    spec: &'a ModelSpec,
    /// Unix seconds: the catalog's `released` date, else when the server loaded the catalog
    /// (the moment the model became available here), never a made-up release.
    created: i64,
    pricing: ModelPricing,
    max_input_tokens: Option<u64>,
    max_output_tokens: Option<u64>,
}

impl<'a> ModelFacts<'a> {
    /// `updated_at` is the Pricing API's date; `loaded_at` the Unix second the server loaded
    /// the catalog.
    pub fn new(catalog: &Catalog, spec: &'a ModelSpec, updated_at: &str, loaded_at: i64) -> Self {
        let rows = catalog.model_pricing_rows(spec);
        let usd = rows.iter().map(|r| r.usd_per_million_tokens);
        let (min_price, max_price) = (
            usd.clone().min().unwrap_or_default(),
            usd.max().unwrap_or_default(),
        );
        let table = PriceTable {
            currency: "USD",
            unit: PRICING_UNIT,
            cny_per_usd: catalog.cny_per_usd(),
            rows,
        };
        let pricing = ModelPricing {
            model: spec.id.clone(),
            provider: PROVIDER,
            is_lock_price: false,
            lock_price_per_request: None,
            capabilities: spec.operations.clone(),
            aliases: spec.upstream_ids.clone(),
            input_per_1m_tokens: None,
            output_per_1m_tokens: None,
            pricing_unit: PRICING_UNIT,
            has_complex_pricing: true,
            supported_operations: spec.operations.clone(),
            pricing_summary: PricingSummary {
                currency: "USD",
                unit: PRICING_UNIT,
                min_price,
                max_price,
            },
            pricing_provenance: PricingProvenance {
                source_currency: "CNY",
                cny_per_usd: catalog.cny_per_usd(),
                conversion: "usd_per_million_tokens = cny_per_million_tokens / cny_per_usd, rounded to 6 decimals",
                updated_at: updated_at.to_owned(),
                provisional: table.rows.iter().any(|r| r.provisional),
            },
            pricing_details: table,
        };
        // The platform's token limits are a language model's context and reply sizes. A video
        // model's honest equivalent is the most tokens one task can count: the longest output
        // at the largest size, and the longest video input (null when no operation takes one).
        let ceiling = token_ceiling(catalog, spec);
        Self {
            spec,
            created: spec.released.map_or(loaded_at, |d| d.unix_seconds()),
            pricing,
            max_input_tokens: ceiling.and_then(|c| c.input),
            max_output_tokens: ceiling.map(|c| c.output),
        }
    }

    /// The model's id.
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// The model's capability tags (`?tag=`): the operations it serves.
    pub fn capabilities(&self) -> &[Operation] {
        &self.spec.operations
    }

    fn discovery(&self) -> Discovery {
        let lifecycle = Lifecycle {
            stage: STAGE,
            reason: None,
            replacement_model: None,
            released_at: self.spec.released.map(|d| d.rfc3339()),
            deprecated_at: None,
            retired_at: None,
            sunset_at: None,
            latest: false,
            latest_source: "none",
            latest_window_days: None,
        };
        Discovery {
            aliases: self.spec.upstream_ids.clone(),
            pricing: self.pricing.pricing_details.clone(),
            capabilities: self.spec.operations.clone(),
            max_input_tokens: self.max_input_tokens,
            max_output_tokens: self.max_output_tokens,
            category: CATEGORY,
            pricing_unit: PRICING_UNIT,
            has_complex_pricing: true,
            pricing_summary: self.pricing.pricing_summary.clone(),
            lifecycle,
            commercial: Commercial {
                user_charge_policy: "paid",
                free_reason: None,
                free_until: None,
            },
            badges: [],
        }
    }

    fn routes(&self) -> RequestRoutes {
        RequestRoutes {
            public_operations: self.spec.operations.clone(),
            request_endpoint: REQUEST_ENDPOINT,
            request_endpoint_by_operation: self
                .spec
                .operations
                .iter()
                .map(|op| (op.as_str(), REQUEST_ENDPOINT))
                .collect(),
        }
    }

    /// The model's entry in the full list.
    pub fn list_item(&self) -> ModelListItem {
        ModelListItem {
            id: self.spec.id.clone(),
            object: "model",
            created: self.created,
            owned_by: PROVIDER,
            tokenlab: ListExtension {
                discovery: self.discovery(),
                request_format_summary: self.routes(),
            },
        }
    }

    /// The model's entry in the compact list.
    pub fn compact_item(&self) -> CompactModel {
        let summary = &self.pricing.pricing_summary;
        CompactModel {
            id: self.spec.id.clone(),
            provider: PROVIDER,
            category: CATEGORY,
            capabilities: self.spec.operations.clone(),
            max_input_tokens: self.max_input_tokens,
            max_output_tokens: self.max_output_tokens,
            pricing: CompactPricing {
                unit: PRICING_UNIT,
                currency: "USD",
                min_price: summary.min_price,
                max_price: summary.max_price,
                has_complex_pricing: true,
            },
            status: STAGE,
            latest: false,
            supported_operations: self.spec.operations.clone(),
            request_endpoint: REQUEST_ENDPOINT,
        }
    }

    /// `GET /v1/models/{model}`.
    pub fn model(&self) -> Model {
        let spec = self.spec;
        let d = spec.duration;
        Model {
            id: spec.id.clone(),
            object: "model",
            created: self.created,
            owned_by: PROVIDER,
            tokenlab: ModelExtension {
                discovery: self.discovery(),
                supported_operations: spec.operations.clone(),
                pricing_provenance: self.pricing.pricing_provenance.clone(),
                accepted_request_formats: [],
                request_format_summary: RequestFormat {
                    routes: self.routes(),
                    supported_parameters: FIELDS.to_vec(),
                    required_selectors: Vec::new(),
                    optional_selectors: vec!["resolution", "duration", "aspect_ratio"],
                    resolutions: spec.resolutions.clone(),
                    durations: (d.min..=d.max).map(|s| s.to_string()).collect(),
                    durations_label: format!(
                        "{}–{} s, default {}; -1 lets the model decide",
                        d.min, d.max, d.default
                    ),
                    aspect_ratios: spec.aspect_ratios.clone(),
                },
                name: spec.name.clone(),
                description: spec.description.clone(),
                operations: spec.operations.clone(),
                resolutions: spec.resolutions.clone(),
                default_resolution: spec.default_resolution,
                aspect_ratios: spec.aspect_ratios.clone(),
                duration: spec.duration,
                reference_limits: spec.reference_limits,
                input_clips: spec.input_clips,
                audio_operations: Operation::ALL
                    .into_iter()
                    .filter(|o| spec.takes_audio(*o))
                    .collect(),
                audio_only_references: spec.audio_only_references,
                adaptive_only_operations: spec.adaptive_only_operations.clone(),
                output_formats: spec.output_formats.clone(),
                draft: spec.draft,
                prices: spec.prices.clone(),
                video_input_min_tokens: spec.video_input_min_tokens,
            },
        }
    }

    /// `GET /v1/models/{model}/pricing`, and the model's entry of `GET /v1/pricing`.
    pub fn pricing(&self) -> &ModelPricing {
        &self.pricing
    }
}

/// The platform's discovery fields, shared by a model's list entry and its detail.
#[derive(Clone, Serialize, ToSchema)]
pub struct Discovery {
    /// Other ids this gateway takes for the model: the upstream's own, which the Ark-compatible
    /// surface accepts as `model`.
    aliases: Vec<String>,
    /// The model's price table.
    pricing: PriceTable,
    /// Capability tags (`?tag=`): the operations it serves.
    capabilities: Vec<Operation>,
    /// Tokens of the longest video input one task can count, at the largest output size; null
    /// when no operation takes a video.
    max_input_tokens: Option<u64>,
    /// Tokens of the largest output one task can count: the longest duration at the
    /// largest-area size of the top resolution.
    max_output_tokens: Option<u64>,
    /// Always `video`.
    category: &'static str,
    /// Always `per_1m_tokens`.
    pricing_unit: &'static str,
    /// Always true: the rate depends on the resolution and on whether a video is an input.
    has_complex_pricing: bool,
    pricing_summary: PricingSummary,
    lifecycle: Lifecycle,
    commercial: Commercial,
    /// Always empty: each of the platform's badges (free, latest, preview, deprecated,
    /// retired) marks a state no catalog model is in.
    #[schema(value_type = Vec<Object>, max_items = 0)]
    badges: [(); 0],
}

/// A model's lifecycle as the platform shows it.
#[derive(Clone, Serialize, ToSchema)]
pub struct Lifecycle {
    /// Always `active`: the catalog lists the models this gateway serves.
    stage: &'static str,
    reason: Option<String>,
    replacement_model: Option<String>,
    /// Midnight UTC of the catalog's `released` date (the upstream model version); null when
    /// the catalog gives none.
    released_at: Option<String>,
    deprecated_at: Option<String>,
    retired_at: Option<String>,
    sunset_at: Option<String>,
    /// Always false: there is no "latest" policy to derive it from.
    latest: bool,
    /// Always `none`.
    latest_source: &'static str,
    latest_window_days: Option<u32>,
}

/// Who pays: every task is charged to the key's balance.
#[derive(Clone, Serialize, ToSchema)]
pub struct Commercial {
    /// Always `paid`.
    user_charge_policy: &'static str,
    free_reason: Option<String>,
    free_until: Option<String>,
}

/// Where a model's tasks are created.
#[derive(Clone, Serialize, ToSchema)]
pub struct RequestRoutes {
    public_operations: Vec<Operation>,
    /// Always `/v1/videos/generations`.
    request_endpoint: &'static str,
    request_endpoint_by_operation: BTreeMap<&'static str, &'static str>,
}

/// How to build a create request for the model.
#[derive(Serialize, ToSchema)]
pub struct RequestFormat {
    #[serde(flatten)]
    routes: RequestRoutes,
    /// Every top-level field the create request accepts, aliases included.
    supported_parameters: Vec<&'static str>,
    /// Always empty: every selector has a default.
    required_selectors: Vec<&'static str>,
    optional_selectors: Vec<&'static str>,
    resolutions: Vec<Resolution>,
    /// Whole seconds.
    durations: Vec<String>,
    durations_label: String,
    aspect_ratios: Vec<AspectRatio>,
}

/// A model's prices: one row per resolution and video input.
#[derive(Clone, Serialize, ToSchema)]
pub struct PriceTable {
    /// Always `USD`: what the gateway bills in.
    currency: &'static str,
    /// Always `per_1m_tokens`.
    unit: &'static str,
    /// The conversion rate from the catalog's CNY prices.
    #[schema(value_type = String, example = "6.8")]
    cny_per_usd: Decimal,
    rows: Vec<PricingRow>,
}

/// The range of a model's rates.
#[derive(Clone, Serialize, ToSchema)]
pub struct PricingSummary {
    /// Always `USD`.
    currency: &'static str,
    /// Always `per_1m_tokens`.
    unit: &'static str,
    /// The lowest `usd_per_million_tokens` of its rows.
    #[schema(value_type = String, example = "4.117647")]
    min_price: Decimal,
    /// The highest `usd_per_million_tokens` of its rows.
    #[schema(value_type = String, example = "7.500000")]
    max_price: Decimal,
}

/// Where a model's prices come from.
#[derive(Clone, Serialize, ToSchema)]
pub struct PricingProvenance {
    /// Always `CNY`: the catalog's prices are CNY per million tokens.
    source_currency: &'static str,
    #[schema(value_type = String, example = "6.8")]
    cny_per_usd: Decimal,
    conversion: &'static str,
    /// The Pricing API's `updated_at`.
    updated_at: String,
    /// Whether a row has no published price (see each row's `provisional`).
    provisional: bool,
}

/// One model's prices: `GET /v1/models/{model}/pricing`, and an entry of `GET /v1/pricing`.
#[derive(Clone, Serialize, ToSchema)]
pub struct ModelPricing {
    model: String,
    /// Always `bytedance`.
    provider: &'static str,
    /// Always false: tasks are priced by tokens, never per request.
    is_lock_price: bool,
    /// Always null (see `is_lock_price`).
    lock_price_per_request: Option<String>,
    capabilities: Vec<Operation>,
    aliases: Vec<String>,
    /// Always null: one rate prices a task's input and output tokens together, and it depends
    /// on the resolution and the input kind; the rates are in `pricing_details.rows`.
    input_per_1m_tokens: Option<String>,
    /// Always null, as `input_per_1m_tokens`.
    output_per_1m_tokens: Option<String>,
    /// Always `per_1m_tokens`.
    pricing_unit: &'static str,
    /// Always true.
    has_complex_pricing: bool,
    supported_operations: Vec<Operation>,
    pricing_summary: PricingSummary,
    pricing_provenance: PricingProvenance,
    pricing_details: PriceTable,
}

/// The platform's list fields of a model.
#[derive(Clone, Serialize, ToSchema)]
pub struct ListExtension {
    #[serde(flatten)]
    discovery: Discovery,
    request_format_summary: RequestRoutes,
}

/// A model in `GET /v1/models`: the platform's discovery fields. The full detail is
/// `GET /v1/models/{model}`.
#[derive(Clone, Serialize, ToSchema)]
pub struct ModelListItem {
    /// The id to send as `model`.
    id: String,
    /// Always `model`.
    object: &'static str,
    /// Unix seconds: midnight UTC of the catalog's `released` date, else when the server
    /// loaded the catalog.
    created: i64,
    /// Always `bytedance`.
    owned_by: &'static str,
    tokenlab: ListExtension,
}

/// A model's detail: the platform's fields, then ours (operations, limits, CNY prices).
#[derive(Serialize, ToSchema)]
pub struct ModelExtension {
    #[serde(flatten)]
    discovery: Discovery,
    supported_operations: Vec<Operation>,
    pricing_provenance: PricingProvenance,
    /// Always empty: the platform's formats are chat formats; video tasks are created at
    /// `request_format_summary.request_endpoint`.
    #[schema(value_type = Vec<String>, max_items = 0)]
    accepted_request_formats: [(); 0],
    request_format_summary: RequestFormat,
    name: String,
    description: String,
    operations: Vec<Operation>,
    /// Anything else is `unsupported_resolution`.
    resolutions: Vec<Resolution>,
    /// Used when a request names none.
    default_resolution: Resolution,
    /// `adaptive` follows an image or video input.
    aspect_ratios: Vec<AspectRatio>,
    duration: DurationRange,
    /// reference-to-video limits.
    reference_limits: ReferenceLimits,
    /// How long each input video or audio may last, and all references of a kind together.
    input_clips: ClipLimits,
    /// The operations that take `audio_urls`.
    audio_operations: Vec<Operation>,
    /// Whether audio may be a reference-to-video's only reference.
    audio_only_references: bool,
    /// Operations whose `aspect_ratio` must be `adaptive` (their output follows the input).
    adaptive_only_operations: Vec<Operation>,
    /// The containers `output_format` may ask for.
    output_formats: Vec<OutputFormat>,
    /// Its draft mode (`draft: true`), null when it has none.
    draft: Option<DraftSpec>,
    /// CNY per million tokens; each resolution is in exactly one row.
    prices: Vec<PriceRow>,
    /// Video-input requests are never billed below this many tokens.
    video_input_min_tokens: u64,
}

/// A catalog entry: what a model serves and what it costs. Clients read limits from
/// `tokenlab` rather than hard-coding them.
#[derive(Serialize, ToSchema)]
pub struct Model {
    /// The id to send as `model`.
    id: String,
    /// Always `model`.
    object: &'static str,
    /// Unix seconds, as in the list.
    created: i64,
    /// Always `bytedance`.
    owned_by: &'static str,
    tokenlab: ModelExtension,
}

/// The compact view's price range.
#[derive(Serialize, ToSchema)]
pub struct CompactPricing {
    /// Always `per_1m_tokens`.
    unit: &'static str,
    /// Always `USD`.
    currency: &'static str,
    #[schema(value_type = String, example = "4.117647")]
    min_price: Decimal,
    #[schema(value_type = String, example = "7.500000")]
    max_price: Decimal,
    /// Always true.
    has_complex_pricing: bool,
}

/// A model in `GET /v1/models?view=compact`: what is needed to shortlist it.
#[derive(Serialize, ToSchema)]
pub struct CompactModel {
    id: String,
    /// Always `bytedance`.
    provider: &'static str,
    /// Always `video`.
    category: &'static str,
    capabilities: Vec<Operation>,
    max_input_tokens: Option<u64>,
    max_output_tokens: Option<u64>,
    pricing: CompactPricing,
    /// The lifecycle stage: always `active`.
    status: &'static str,
    /// Always false.
    latest: bool,
    supported_operations: Vec<Operation>,
    /// Always `/v1/videos/generations`.
    request_endpoint: &'static str,
}

/// `GET /v1/models` (`view=full`). Both list shapes are closed (`additionalProperties: false`,
/// from `deny_unknown_fields`), as the platform's are, so that the two never both match.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelList {
    /// Always `list`.
    object: &'static str,
    data: Vec<ModelListItem>,
}

impl ModelList {
    pub fn new(data: Vec<ModelListItem>) -> Self {
        Self {
            object: "list",
            data,
        }
    }
}

/// `GET /v1/models?view=compact`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompactModelList {
    /// Always `list`.
    object: &'static str,
    /// Always `compact`.
    view: &'static str,
    /// How many models `data` holds.
    count: usize,
    data: Vec<CompactModel>,
}

impl CompactModelList {
    pub fn new(data: Vec<CompactModel>) -> Self {
        Self {
            object: "list",
            view: "compact",
            count: data.len(),
            data,
        }
    }
}

/// `GET /v1/models` answers a [`ModelList`] or, with `view=compact`, a [`CompactModelList`].
/// Only named in the document: one status with two bodies of one content type is a `oneOf`,
/// which utoipa does not derive.
pub struct ModelListResponse;

impl PartialSchema for ModelListResponse {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(Ref::from_schema_name(ModelList::name()))
            .item(Ref::from_schema_name(CompactModelList::name()))
            .into()
    }
}

impl ToSchema for ModelListResponse {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ModelList::name().into_owned(), ModelList::schema()));
        ModelList::schemas(schemas);
        schemas.push((
            CompactModelList::name().into_owned(),
            CompactModelList::schema(),
        ));
        CompactModelList::schemas(schemas);
    }
}

/// How tokens and money are computed from a request.
#[derive(Serialize, ToSchema)]
pub struct TokenFormula {
    output_tokens: &'static str,
    input_tokens: &'static str,
    cost_cny: &'static str,
    cost_usd: &'static str,
}

/// `GET /v1/pricing`: one entry per model, exact decimals as strings.
#[derive(Serialize, ToSchema)]
pub struct PricingList {
    /// Always `pricing`.
    object: &'static str,
    /// RFC 3339: midnight UTC of the catalog's `prices_updated` date, else when the server
    /// loaded the catalog.
    updated_at: String,
    /// Always `USD`: what the gateway bills in.
    currency: &'static str,
    /// The conversion rate from the official CNY prices.
    #[schema(value_type = String, example = "6.8")]
    cny_per_usd: Decimal,
    token_formula: TokenFormula,
    data: Vec<ModelPricing>,
}

impl PricingList {
    pub fn new(catalog: &Catalog, updated_at: &str, data: Vec<ModelPricing>) -> Self {
        Self {
            object: "pricing",
            updated_at: updated_at.to_owned(),
            currency: "USD",
            cny_per_usd: catalog.cny_per_usd(),
            token_formula: TokenFormula {
                output_tokens: "floor(width * height * (24 * seconds + 1) / 1024)",
                input_tokens: "floor(width * height * 24 * input_video_seconds / 1024), only when video is an input",
                cost_cny: "tokens * cny_per_million_tokens / 1000000",
                cost_usd: "cost_cny / cny_per_usd, rounded to 6 decimals",
            },
            data,
        }
    }
}

/// The Pricing API's `updated_at`: the catalog's price list date, else the load time.
pub fn pricing_updated_at(catalog: &Catalog, loaded_at: i64) -> String {
    catalog
        .prices_updated()
        .map_or_else(|| rfc3339(loaded_at), |d| d.rfc3339())
}
