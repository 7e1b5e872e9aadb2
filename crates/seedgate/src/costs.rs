//! What tasks cost us, by model and vendor: the operator's report of what customers were
//! charged (the platform's token price, whichever vendor served them) against what each vendor
//! charged or would charge, and the margin between.

use std::collections::BTreeMap;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use crate::config::{ChannelConfig, VendorRate};
use crate::store::usage::VendorCharge;

/// One model on one vendor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VendorLine {
    pub model: String,
    pub vendor: String,
    pub tasks: i64,
    /// Tokens the customers were charged for.
    pub tokens: i64,
    pub charged_usd_micros: i64,
    /// Of `tasks`, those whose vendor cost is known (reported, or priced by a channel rate).
    pub priced: i64,
    /// What the vendor charged for the priced tasks.
    pub vendor_cost_usd_micros: i64,
    /// What the customers were charged for the priced tasks, less their vendor cost.
    pub margin_usd_micros: i64,
    /// The compute time vendors reported billing.
    pub compute_ms: i64,
}

/// `rate` applied to `amount` units, to the micro-dollar.
fn priced(rate: Decimal, amount: Decimal) -> Option<i64> {
    (rate * amount * Decimal::from(1_000_000)).round().to_i64()
}

/// What the vendor charged for one task: what it reported; else the channel's rate for the
/// model, per second of video or per million of the vendor's tokens; else, on Ark, the
/// official price the customer paid (Ark bills its tokens at that price). None when unknown.
pub fn vendor_cost(charge: &VendorCharge, rate: Option<&VendorRate>) -> Option<i64> {
    if let Some(reported) = charge.upstream_cost_usd_micros {
        return Some(reported);
    }
    let rate = rate.copied().unwrap_or_default();
    if let Some(per_second) = rate.usd_per_second {
        return priced(per_second, Decimal::try_from(charge.video_seconds).ok()?);
    }
    if let Some(per_million) = rate.usd_per_million_tokens {
        let tokens = charge.upstream_tokens.unwrap_or(charge.tokens);
        return priced(
            per_million,
            Decimal::from(tokens) / Decimal::from(1_000_000),
        );
    }
    (charge.vendor == "ark").then_some(charge.cost_usd_micros)
}

/// The report: one line per model and vendor, in that order.
pub fn vendor_report(charges: &[VendorCharge], channels: &[ChannelConfig]) -> Vec<VendorLine> {
    let mut lines: BTreeMap<(String, String), VendorLine> = BTreeMap::new();
    for charge in charges {
        let rate = channels
            .iter()
            .find(|c| c.id.as_str() == charge.channel)
            .and_then(|c| c.costs.get(&charge.model));
        let line = lines
            .entry((charge.model.clone(), charge.vendor.clone()))
            .or_insert_with(|| VendorLine {
                model: charge.model.clone(),
                vendor: charge.vendor.clone(),
                ..VendorLine::default()
            });
        line.tasks += 1;
        line.tokens += charge.tokens;
        line.charged_usd_micros += charge.cost_usd_micros;
        line.compute_ms += charge.upstream_compute_ms.unwrap_or(0);
        if let Some(cost) = vendor_cost(charge, rate) {
            line.priced += 1;
            line.vendor_cost_usd_micros += cost;
            line.margin_usd_micros += charge.cost_usd_micros - cost;
        }
    }
    lines.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(vendor: &str, channel: &str, cost: i64) -> VendorCharge {
        VendorCharge {
            model: "seedance-2.0".into(),
            vendor: vendor.into(),
            channel: channel.into(),
            tokens: 100_000,
            cost_usd_micros: cost,
            video_seconds: 5.0,
            upstream_tokens: None,
            upstream_compute_ms: None,
            upstream_cost_usd_micros: None,
        }
    }

    fn channel(id: &str, rate: VendorRate) -> ChannelConfig {
        let text = format!(
            "id = \"{id}\"\nprovider = \"fal\"\napi_key_env = \"K\"\nresolutions = [\"480p\"]\n\
             models = {{ \"seedance-2.0\" = \"bytedance/seedance-2.0\" }}\n"
        );
        let mut channel: ChannelConfig = toml::from_str(&text).unwrap();
        channel.costs.insert("seedance-2.0".into(), rate);
        channel
    }

    #[test]
    fn each_vendor_is_priced_by_what_it_reported_or_its_rate_and_margins_add_up() {
        let per_second = VendorRate {
            usd_per_second: Some("0.1013".parse().unwrap()),
            usd_per_million_tokens: None,
        };
        let mut openrouter = charge("openrouter", "or", 600_000);
        openrouter.upstream_cost_usd_micros = Some(500_000);
        openrouter.upstream_compute_ms = Some(1_500);
        let charges = [
            charge("fal", "fal", 700_000),
            charge("fal", "fal", 700_000),
            charge("replicate", "rep", 700_000),
            openrouter,
            charge("ark", "volc", 650_000),
        ];
        let lines = vendor_report(&charges, &[channel("fal", per_second)]);
        let by_vendor = |vendor: &str| lines.iter().find(|l| l.vendor == vendor).unwrap();
        // fal: 5 s at $0.1013 a second, twice.
        let fal = by_vendor("fal");
        assert_eq!(
            (
                fal.tasks,
                fal.priced,
                fal.vendor_cost_usd_micros,
                fal.margin_usd_micros
            ),
            (2, 2, 1_013_000, 1_400_000 - 1_013_000)
        );
        // Replicate with no rate: charged, but its cost is not known, so no margin is claimed.
        let replicate = by_vendor("replicate");
        assert_eq!(
            (
                replicate.priced,
                replicate.charged_usd_micros,
                replicate.margin_usd_micros
            ),
            (0, 700_000, 0)
        );
        // OpenRouter's own report, to the micro-dollar.
        let openrouter = by_vendor("openrouter");
        assert_eq!(
            (
                openrouter.vendor_cost_usd_micros,
                openrouter.margin_usd_micros,
                openrouter.compute_ms
            ),
            (500_000, 100_000, 1_500)
        );
        // Ark at the official price: no margin.
        let ark = by_vendor("ark");
        assert_eq!(
            (ark.vendor_cost_usd_micros, ark.margin_usd_micros),
            (650_000, 0)
        );
        // A per-million rate prices the vendor's own tokens.
        let mut counted = charge("ark", "byteplus", 650_000);
        counted.upstream_tokens = Some(200_000);
        let rate = VendorRate {
            usd_per_second: None,
            usd_per_million_tokens: Some("2.5".parse().unwrap()),
        };
        assert_eq!(vendor_cost(&counted, Some(&rate)), Some(500_000));
    }
}
