//! The management API's rules, apart from HTTP: what a key's create and update bodies may
//! say, and how usage and billing filters read. Pure, so every rule is unit-tested.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rust_decimal::Decimal;
use seedgate_contract::{ApiError, Catalog, ErrorCode};
use serde_json::{Map, Value};

use crate::store::usage::{UsageFilter, DAY_MS};
use crate::store::{KeyStatus, KeyUpdate};

/// The highest spending cap a key may get, in USD.
const MAX_LIMIT_USD: i64 = 1_000_000;
const MAX_NAME_CHARS: usize = 50;
const DEFAULT_KEY_NAME: &str = "Default Key";
/// The one vendor and scene of every model here, as usage reports name them.
pub const MODEL_VENDOR: &str = "bytedance";
pub const SCENE: &str = "video";

/// A key to create, as its organization asked for it.
#[derive(Debug, PartialEq)]
pub struct NewKeyRequest {
    pub name: String,
    pub limit_usd_micros: Option<i64>,
    pub models: Vec<String>,
    pub expires_at_ms: Option<i64>,
}

fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(
            ErrorCode::InvalidJson,
            "The body must be a JSON object.",
        )),
        Err(e) => Err(ApiError::new(
            ErrorCode::InvalidJson,
            format!("The body is not valid JSON: {e}."),
        )),
    }
}

/// `POST /v1/management/api-keys`.
pub fn parse_new_key(
    catalog: &Catalog,
    body: &[u8],
    now_ms: i64,
) -> Result<NewKeyRequest, ApiError> {
    let body = object(body)?;
    check_currency(&body)?;
    Ok(NewKeyRequest {
        name: match body.get("name") {
            None => DEFAULT_KEY_NAME.to_owned(),
            Some(name) => parse_name(name)?,
        },
        limit_usd_micros: body
            .get("limitAmount")
            .map(parse_limit)
            .transpose()?
            .flatten(),
        models: body
            .get("models")
            .map(|models| parse_models(catalog, models))
            .transpose()?
            .unwrap_or_default(),
        expires_at_ms: body
            .get("expiresAt")
            .map(|at| parse_expiry(at, now_ms))
            .transpose()?
            .flatten(),
    })
}

/// `PATCH /v1/management/api-keys/{keyId}`: at least one field; a given `null` clears the cap
/// or the expiry.
pub fn parse_key_update(
    catalog: &Catalog,
    body: &[u8],
    now_ms: i64,
) -> Result<KeyUpdate, ApiError> {
    let body = object(body)?;
    check_currency(&body)?;
    let update = KeyUpdate {
        name: body.get("name").map(parse_name).transpose()?,
        status: body.get("status").map(parse_status).transpose()?,
        limit_usd_micros: body.get("limitAmount").map(parse_limit).transpose()?,
        models: body
            .get("models")
            .map(|models| parse_models(catalog, models))
            .transpose()?,
        expires_at_ms: body
            .get("expiresAt")
            .map(|at| parse_expiry(at, now_ms))
            .transpose()?,
    };
    let empty = update.name.is_none()
        && update.status.is_none()
        && update.limit_usd_micros.is_none()
        && update.models.is_none()
        && update.expires_at_ms.is_none();
    if empty {
        return Err(ApiError::new(
            ErrorCode::EmptyUpdate,
            "Give at least one of name, status, limitAmount, models or expiresAt.",
        ));
    }
    Ok(update)
}

fn check_currency(body: &Map<String, Value>) -> Result<(), ApiError> {
    match body.get("limitCurrency") {
        None => Ok(()),
        Some(Value::String(currency)) if currency == "USD" => Ok(()),
        Some(Value::String(currency)) if currency == "CNY" => Err(ApiError::new(
            ErrorCode::CurrencyRetired,
            "CNY caps are retired; give limitAmount in USD.",
        )
        .with_param("limitCurrency")),
        Some(_) => Err(
            ApiError::new(ErrorCode::InvalidCurrency, "limitCurrency must be \"USD\".")
                .with_param("limitCurrency"),
        ),
    }
}

fn parse_name(name: &Value) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::new(
            ErrorCode::InvalidName,
            format!("name must be 1 to {MAX_NAME_CHARS} characters after trimming."),
        )
        .with_param("name")
    };
    let name = name.as_str().ok_or_else(invalid)?.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.contains('\0') {
        return Err(invalid());
    }
    Ok(name.to_owned())
}

fn parse_status(status: &Value) -> Result<KeyStatus, ApiError> {
    serde_json::from_value(status.clone()).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidStatus,
            "status must be one of active, inactive, revoked.",
        )
        .with_param("status")
    })
}

/// A cap in USD, exact to the micro-dollar; `null` is unlimited.
fn parse_limit(limit: &Value) -> Result<Option<i64>, ApiError> {
    let invalid = |why: &str| {
        ApiError::new(
            ErrorCode::InvalidLimitAmount,
            format!("limitAmount must be null or a number of USD from 0 to {MAX_LIMIT_USD}{why}."),
        )
        .with_param("limitAmount")
    };
    let number = match limit {
        Value::Null => return Ok(None),
        Value::Number(number) => number.to_string(),
        _ => return Err(invalid("")),
    };
    let amount = Decimal::from_str_exact(&number)
        .or_else(|_| Decimal::from_scientific(&number))
        .map_err(|_| invalid(""))?
        .normalize();
    if amount.is_sign_negative() || amount > Decimal::from(MAX_LIMIT_USD) {
        return Err(invalid(""));
    }
    if amount.scale() > 6 {
        return Err(invalid(", with at most 6 decimals"));
    }
    let micros = (amount * Decimal::from(1_000_000)).trunc();
    Ok(Some(micros.try_into().map_err(|_| invalid(""))?))
}

fn parse_models(catalog: &Catalog, models: &Value) -> Result<Vec<String>, ApiError> {
    let invalid =
        |message: String| ApiError::new(ErrorCode::InvalidModels, message).with_param("models");
    let Value::Array(items) = models else {
        return Err(invalid("models must be an array of model ids.".into()));
    };
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let model = item
            .as_str()
            .ok_or_else(|| invalid("models must be an array of model ids.".into()))?;
        if catalog.model(model).is_none() {
            return Err(invalid(format!(
                "Unknown model `{model}`; GET /v1/models lists them."
            )));
        }
        if !out.iter().any(|m| m == model) {
            out.push(model.to_owned());
        }
    }
    Ok(out)
}

/// An RFC 3339 time in the future, or `null` for no expiry.
fn parse_expiry(at: &Value, now_ms: i64) -> Result<Option<i64>, ApiError> {
    let invalid = |message: &str| {
        ApiError::new(ErrorCode::InvalidExpiresAt, message.to_owned()).with_param("expiresAt")
    };
    match at {
        Value::Null => Ok(None),
        Value::String(text) => {
            let at = DateTime::parse_from_rfc3339(text)
                .map_err(|_| {
                    invalid("expiresAt must be an RFC 3339 time, e.g. 2027-01-31T00:00:00Z.")
                })?
                .timestamp_millis();
            if at <= now_ms {
                return Err(invalid("expiresAt must be in the future."));
            }
            Ok(Some(at))
        }
        _ => Err(invalid("expiresAt must be an RFC 3339 time or null.")),
    }
}

/// Filters of the usage and billing reports, as the query gives them.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// 1-based page (usage only).
    pub page: Option<i64>,
    /// 1–100, default 50 (usage only).
    pub limit: Option<i64>,
    /// Only this model.
    pub model: Option<String>,
    /// Only this vendor (every model here is `bytedance`'s).
    #[serde(rename = "modelVendor")]
    #[param(rename = "modelVendor")]
    pub model_vendor: Option<String>,
    /// Only this scene (every task here is `video`).
    pub scene: Option<String>,
    /// From this day (`YYYY-MM-DD`, UTC) or time (RFC 3339), inclusive.
    #[serde(rename = "startDate")]
    #[param(rename = "startDate")]
    pub start_date: Option<String>,
    /// To this day or time, inclusive.
    #[serde(rename = "endDate")]
    #[param(rename = "endDate")]
    pub end_date: Option<String>,
}

/// A report's filter: None when it can match nothing here (another vendor or scene).
pub fn report_filter(query: &ReportQuery) -> Result<Option<UsageFilter<'_>>, ApiError> {
    for (param, value) in [
        ("model", &query.model),
        ("modelVendor", &query.model_vendor),
    ] {
        if value.as_ref().is_some_and(|v| v.chars().count() > 100) {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("{param} is at most 100 characters."),
            )
            .with_param(param));
        }
    }
    const SCENES: [&str; 10] = [
        "chat",
        "image",
        "audio",
        "video",
        "embedding",
        "rerank",
        "translation",
        "music",
        "3d",
        "realtime",
    ];
    if let Some(scene) = &query.scene {
        if !SCENES.contains(&scene.as_str()) {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("scene must be one of {}.", SCENES.join(", ")),
            )
            .with_param("scene"));
        }
    }
    let from_ms = query
        .start_date
        .as_deref()
        .map(|d| parse_bound(d, "startDate", false))
        .transpose()?;
    let until_ms = query
        .end_date
        .as_deref()
        .map(|d| parse_bound(d, "endDate", true))
        .transpose()?;
    let other_vendor = query
        .model_vendor
        .as_deref()
        .is_some_and(|v| !v.eq_ignore_ascii_case(MODEL_VENDOR));
    let other_scene = query.scene.as_deref().is_some_and(|s| s != SCENE);
    if other_vendor || other_scene {
        return Ok(None);
    }
    Ok(Some(UsageFilter {
        model: query.model.as_deref(),
        from_ms,
        until_ms,
    }))
}

/// A date bound in milliseconds: a start is where it begins; an end (inclusive) is where the
/// next day, or the next millisecond, begins.
fn parse_bound(text: &str, param: &str, end: bool) -> Result<i64, ApiError> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let start = day
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
            .unwrap_or_default();
        return Ok(if end { start + DAY_MS } else { start });
    }
    let at = DateTime::parse_from_rfc3339(text)
        .map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidDate,
                format!("{param} must be YYYY-MM-DD or an RFC 3339 time with its offset."),
            )
            .with_param(param)
        })?
        .timestamp_millis();
    Ok(if end { at + 1 } else { at })
}

/// The page and page size of a listing: page from 1, size 1–100 (default 50).
pub fn page(page: Option<i64>, limit: Option<i64>) -> Result<(i64, i64), ApiError> {
    let page = page.unwrap_or(1);
    let limit = limit.unwrap_or(50);
    if page < 1 {
        return Err(ApiError::new(ErrorCode::InvalidPage, "page starts at 1.").with_param("page"));
    }
    if !(1..=100).contains(&limit) {
        return Err(
            ApiError::new(ErrorCode::InvalidLimit, "limit must be between 1 and 100.")
                .with_param("limit"),
        );
    }
    Ok((page, limit))
}

/// How many days of spending `GET /v1/account/usage` reports by default, and at most.
pub const DEFAULT_USAGE_DAYS: i64 = 30;
pub const MAX_USAGE_DAYS: i64 = 90;

/// The charges of the last `days` UTC days, today included, and the first of those days.
pub fn recent_days(days: i64, now_ms: i64) -> Result<(UsageFilter<'static>, i64), ApiError> {
    if !(1..=MAX_USAGE_DAYS).contains(&days) {
        return Err(ApiError::new(
            ErrorCode::InvalidDays,
            format!("days must be between 1 and {MAX_USAGE_DAYS}."),
        )
        .with_param("days"));
    }
    let first_day_ms = (now_ms.div_euclid(DAY_MS) - (days - 1)) * DAY_MS;
    let filter = UsageFilter {
        from_ms: Some(first_day_ms),
        ..UsageFilter::default()
    };
    Ok((filter, first_day_ms))
}

/// A time as the management API writes it: RFC 3339, UTC, milliseconds.
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn recent_days_start_at_midnight_utc_and_include_today() {
        let (filter, first) = recent_days(DEFAULT_USAGE_DAYS, NOW).unwrap();
        assert_eq!(first % DAY_MS, 0);
        assert_eq!((NOW - first) / DAY_MS, 29);
        assert_eq!(filter.from_ms, Some(first));
        assert_eq!(filter.until_ms, None);
        let (_, today) = recent_days(1, NOW).unwrap();
        assert!(today <= NOW && NOW - today < DAY_MS);
        for days in [0, -1, MAX_USAGE_DAYS + 1] {
            assert_eq!(
                recent_days(days, NOW).unwrap_err().code.as_str(),
                "invalid_days"
            );
        }
    }

    fn new_key(body: Value) -> Result<NewKeyRequest, ApiError> {
        parse_new_key(&Catalog::builtin(), body.to_string().as_bytes(), NOW)
    }

    fn update(body: Value) -> Result<KeyUpdate, ApiError> {
        parse_key_update(&Catalog::builtin(), body.to_string().as_bytes(), NOW)
    }

    #[test]
    fn a_new_key_takes_defaults_and_exact_caps() {
        let key = new_key(serde_json::json!({})).unwrap();
        assert_eq!(
            key,
            NewKeyRequest {
                name: "Default Key".into(),
                limit_usd_micros: None,
                models: vec![],
                expires_at_ms: None
            }
        );
        let key = new_key(
            serde_json::json!({"name": "  ci  ", "limitAmount": 12.345678,
            "models": ["seedance-2.0", "seedance-2.0"], "expiresAt": "2030-01-01T08:00:00+08:00"}),
        )
        .unwrap();
        assert_eq!(key.name, "ci");
        assert_eq!(key.limit_usd_micros, Some(12_345_678));
        assert_eq!(key.models, ["seedance-2.0"]);
        assert_eq!(key.expires_at_ms, Some(1_893_456_000_000));
        assert_eq!(
            new_key(serde_json::json!({"limitAmount": 0}))
                .unwrap()
                .limit_usd_micros,
            Some(0)
        );
        assert_eq!(
            new_key(serde_json::json!({"limitAmount": 1000000}))
                .unwrap()
                .limit_usd_micros,
            Some(1_000_000_000_000)
        );
    }

    #[test]
    fn bad_key_fields_are_refused_with_their_code() {
        for (body, code) in [
            (serde_json::json!({"name": " "}), "invalid_name"),
            (serde_json::json!({"name": "x".repeat(51)}), "invalid_name"),
            (
                serde_json::json!({"limitAmount": -1}),
                "invalid_limit_amount",
            ),
            (
                serde_json::json!({"limitAmount": 1000000.01}),
                "invalid_limit_amount",
            ),
            (
                serde_json::json!({"limitAmount": 0.0000001}),
                "invalid_limit_amount",
            ),
            (
                serde_json::json!({"limitAmount": "5"}),
                "invalid_limit_amount",
            ),
            (
                serde_json::json!({"limitCurrency": "CNY"}),
                "currency_retired",
            ),
            (
                serde_json::json!({"limitCurrency": "EUR"}),
                "invalid_currency",
            ),
            (serde_json::json!({"models": ["gpt-4"]}), "invalid_models"),
            (
                serde_json::json!({"models": "seedance-2.0"}),
                "invalid_models",
            ),
            (
                serde_json::json!({"expiresAt": "tomorrow"}),
                "invalid_expires_at",
            ),
            (
                serde_json::json!({"expiresAt": "2020-01-01T00:00:00Z"}),
                "invalid_expires_at",
            ),
        ] {
            assert_eq!(
                new_key(body.clone()).unwrap_err().code.as_str(),
                code,
                "{body}"
            );
        }
        let garbage = parse_new_key(&Catalog::builtin(), b"[1]", NOW).unwrap_err();
        assert_eq!(garbage.code.as_str(), "invalid_json");
    }

    #[test]
    fn an_update_needs_a_field_and_null_clears() {
        assert_eq!(
            update(serde_json::json!({})).unwrap_err().code.as_str(),
            "empty_update"
        );
        assert_eq!(
            update(serde_json::json!({"unknown": 1}))
                .unwrap_err()
                .code
                .as_str(),
            "empty_update"
        );
        let cleared = update(serde_json::json!({"limitAmount": null, "expiresAt": null})).unwrap();
        assert_eq!(cleared.limit_usd_micros, Some(None));
        assert_eq!(cleared.expires_at_ms, Some(None));
        assert!(cleared.name.is_none() && cleared.status.is_none());
        let status = update(serde_json::json!({"status": "inactive"})).unwrap();
        assert_eq!(status.status, Some(KeyStatus::Inactive));
        assert_eq!(
            update(serde_json::json!({"status": "paused"}))
                .unwrap_err()
                .code
                .as_str(),
            "invalid_status"
        );
    }

    #[test]
    fn report_bounds_are_inclusive_days_or_instants() {
        let query = ReportQuery {
            start_date: Some("2027-03-28".into()),
            end_date: Some("2027-03-28T00:00:00+08:00".into()),
            ..ReportQuery::default()
        };
        let filter = report_filter(&query).unwrap().unwrap();
        assert_eq!(filter.from_ms, Some(1_806_192_000_000));
        // 2027-03-27T16:00:00Z, inclusive.
        assert_eq!(filter.until_ms, Some(1_806_163_200_001));
        let day = ReportQuery {
            end_date: Some("2027-03-28".into()),
            ..ReportQuery::default()
        };
        assert_eq!(
            report_filter(&day).unwrap().unwrap().until_ms,
            Some(1_806_192_000_000 + DAY_MS)
        );
        let bad = ReportQuery {
            start_date: Some("28/03/2027".into()),
            ..ReportQuery::default()
        };
        assert_eq!(
            report_filter(&bad).unwrap_err().code.as_str(),
            "invalid_date"
        );
    }

    #[test]
    fn another_vendor_or_scene_matches_nothing() {
        let chat = ReportQuery {
            scene: Some("chat".into()),
            ..ReportQuery::default()
        };
        assert!(report_filter(&chat).unwrap().is_none());
        let vendor = ReportQuery {
            model_vendor: Some("openai".into()),
            ..ReportQuery::default()
        };
        assert!(report_filter(&vendor).unwrap().is_none());
        let ours = ReportQuery {
            model_vendor: Some("ByteDance".into()),
            scene: Some("video".into()),
            ..ReportQuery::default()
        };
        assert!(report_filter(&ours).unwrap().is_some());
        let unknown = ReportQuery {
            scene: Some("movies".into()),
            ..ReportQuery::default()
        };
        assert_eq!(
            report_filter(&unknown).unwrap_err().code.as_str(),
            "invalid_query"
        );
    }

    #[test]
    fn times_print_as_utc_rfc3339() {
        assert_eq!(rfc3339(1_893_456_000_000), "2030-01-01T00:00:00.000Z");
    }
}
