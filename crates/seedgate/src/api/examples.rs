//! The request examples of the API reference. They are published in the OpenAPI document,
//! where `/docs` turns each into a curl command for the host it was loaded from and a test
//! sends each one as it stands, so they must work when pasted into a terminal next to a fresh
//! server: inputs inline as data: URIs (a sandbox without network reaches nothing else, and
//! loopback URLs are refused), and prompts in English, which every browser's fonts can show.

use serde_json::{json, Value};
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::OpenApi as Document;
use utoipa::Modify;

/// A 320×320 PNG of a blue box with a yellow band, seen from the front.
const PRODUCT_FRONT: &str = "data:image/png;base64,\
    iVBORw0KGgoAAAANSUhEUgAAAUAAAAFACAMAAAD6TlWYAAAAD1BMVEX08u7U0MgkY+v6zBUeKTv2KY3QAAABcElEQVR4\
    2u3asQ0AIAwEsQD770yN6NI8Qr4RXF+VJEmSJEmSJEmSJEmSJEmSJEmSJEmSJEmSJEmSJEmSJEkKNkMBBAgQIECAAAEC\
    BAgQIECAAAECBAgQIECAAAECBAgQIECAAAECBAgQIECAAAECBAgQIECAAAECBAgQIECAAAECBAgQIECAAAECBAgQIECA\
    AAECBAgQIECAAAECBAgQIECAAAECBAgQIECAAAECBAjwboUCCBAgQIAAAQIECBAgQIAAAQIECBAgQIAAAQIECBAgQIAA\
    AQIECBAgwL8B7W0AAQIECBAgQIAAAQIECBAgQIAAAQIECBAgQIAAAQIECBAgQIAAAQIECBAgQIAAAQIECBAgQIAAAQIE\
    CBAgQIAAAQIECBAgQIAAAQIECBAgQIAAAQIECBAgQIAAAQIECBDg2XgogAABAgQIECBAgAABAgQIUJIkSZIkSZIkSZIk\
    SZIkSZIkSZIkSZIkSZIkqdEGTDu9YYZj6oUAAAAASUVORK5CYII=";

/// The same box from the side, its shaded face to the right.
const PRODUCT_SIDE: &str = "data:image/png;base64,\
    iVBORw0KGgoAAAANSUhEUgAAAUAAAAFACAMAAAD6TlWYAAAAD1BMVEX08u7U0MgkY+v6zBUeKTv2KY3QAAABcklEQVR4\
    2u3aqREAIAwAwfD0XzOWCARDBGKvhNUXIUmSJEmSJEmSJEmSJEmSJEmSJEmSJEmSJEmSJEmSJEmSvq1fNrfoAQQIECBA\
    gAABAgQIECBAgAABAgQIECBAgAABAgQIECBAgAABAgQIECBAgAABAgQIECBAgAABAgQIECBAgAAFECBAgAABAgQIECBA\
    gAABAgQIECBAgAABAgQIECBAgAABAgQIECBAgAABAgQIEGBt4yF6AAECBAgQIECAAAECBAgQIECAAAECBAgQIECAAAEC\
    BAgQIECAAAECBHjK3gYQIECAAAECBAgQIECAAAECBAgQIECAAAECBAgQIECAAAECBAgQIECAAAECBAgQIECAAAECBAiQ\
    HkCAAAECBAgQIECAAAECBAgQIECAAAECBAgQIECAAAECBAgQIECAAAHmWnEAAQIECBAgQIAAAQIECBCgJEmSJEmSJEmS\
    JEmSJEmSJEmSJEmSJEmSJElSeQtP2W05tACC4wAAAABJRU5ErkJggg==";

/// `(name, summary, body)`, the lead first: the names sort in this order, as the document
/// keeps examples in a sorted map.
fn create_examples() -> [(&'static str, &'static str, Value); 2] {
    [
        (
            "fast_text_to_video",
            "Fast text-to-video",
            json!({
                "model": "seedance-2.0-fast",
                "operation": "text-to-video",
                "prompt": "A clean product reveal on a white studio background, the camera pushing in slowly.",
                "duration": 5,
                "resolution": "720p",
                "aspect_ratio": "16:9",
            }),
        ),
        (
            "reference_to_video_4k",
            "4K reference-to-video",
            json!({
                "model": "seedance-2.0",
                "operation": "reference-to-video",
                "prompt": "Keep the same product and lighting; a slow cinematic orbit around it.",
                "reference_images": [PRODUCT_FRONT, PRODUCT_SIDE],
                "duration": 5,
                "resolution": "4k",
                "aspect_ratio": "16:9",
            }),
        ),
    ]
}

/// Puts the examples on the requests that take a create body.
pub struct RequestExamples;

impl Modify for RequestExamples {
    fn modify(&self, doc: &mut Document) {
        for path in ["/v1/videos/generations", "/v1/videos/quote"] {
            let content = doc
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.post.as_mut())
                .and_then(|operation| operation.request_body.as_mut())
                .and_then(|body| body.content.get_mut("application/json"));
            let Some(content) = content else { continue };
            for (name, summary, value) in create_examples() {
                let example = ExampleBuilder::new()
                    .summary(summary)
                    .value(Some(value))
                    .build();
                content.examples.insert(name.to_owned(), example.into());
            }
        }
    }
}
