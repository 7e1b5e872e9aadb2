//! The model catalog as the API reads it: which models exist, what the upstream calls them and
//! what they cost. It is loaded at start-up and never changes while the server runs.

use std::sync::Arc;

use seedgate_contract::Catalog;

pub struct CatalogService {
    pub(super) catalog: Arc<Catalog>,
}

impl CatalogService {
    /// The catalog itself, for the rules that read requests against it and for the bodies
    /// rendered from it once.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The upstream's name for one of our models (its first), or the model's own id where it
    /// has none.
    pub fn upstream_name(&self, model: &str) -> String {
        self.catalog
            .model(model)
            .and_then(|m| m.upstream_ids.first().cloned())
            .unwrap_or_else(|| model.to_owned())
    }

    /// Our id for a model named by our id or one of its upstream names; any other name as
    /// given.
    pub fn model_id<'a>(&'a self, name: &'a str) -> &'a str {
        self.catalog
            .model_or_upstream(name)
            .map_or(name, |m| m.id.as_str())
    }
}
