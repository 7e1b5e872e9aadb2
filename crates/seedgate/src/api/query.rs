//! Query strings as clients build them: many fill every filter of a form and leave the unused
//! ones empty (`?status=&model=`), so a parameter with an empty value counts as not sent.

use axum::extract::rejection::QueryRejection;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::Uri;
use serde::de::DeserializeOwned;

/// Axum's `Query`, with `name=` read as if `name` were absent.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Sync> FromRequestParts<S> for Query<T> {
    type Rejection = QueryRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs = form_urlencoded::parse(query.as_bytes());
        if pairs.clone().all(|(_, value)| !value.is_empty()) {
            return axum::extract::Query::try_from_uri(&parts.uri).map(|q| Self(q.0));
        }
        let kept = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.filter(|(_, value)| !value.is_empty()))
            .finish();
        let uri = Uri::builder()
            .path_and_query(format!("/?{kept}"))
            .build()
            .unwrap_or_default();
        axum::extract::Query::try_from_uri(&uri).map(|q| Self(q.0))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use axum::http::Request;

    use super::*;

    async fn read(uri: &str) -> Result<BTreeMap<String, String>, QueryRejection> {
        let (mut parts, ()) = Request::get(uri).body(()).unwrap_or_default().into_parts();
        Query::from_request_parts(&mut parts, &())
            .await
            .map(|q| q.0)
    }

    #[tokio::test]
    async fn an_empty_query_parameter_is_absent() {
        let filters = read("/v1/tasks?status=&model=seedance-2.0&after=").await;
        let expected = BTreeMap::from([("model".to_owned(), "seedance-2.0".to_owned())]);
        assert_eq!(filters.ok(), Some(expected));
        let encoded = read("/x?prompt=a%20b%26c&empty=").await.ok();
        let expected = BTreeMap::from([("prompt".to_owned(), "a b&c".to_owned())]);
        assert_eq!(encoded, Some(expected));
    }
}
