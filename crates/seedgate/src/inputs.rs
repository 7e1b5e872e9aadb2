//! A job's media inputs, by the field the client sent them in. Every provider sees its inputs
//! through here: the create path refuses targets the outbound guard can never reach, and the
//! engine fetches and checks each input before any provider is asked to do anything.

use seedgate_contract::{MediaInput, VideoJob};

use crate::fetch::MediaKind;

/// One media input: the request field it came in, what it must be, and its value.
pub struct NamedInput<'a> {
    pub field: &'static str,
    pub kind: MediaKind,
    pub input: &'a MediaInput,
}

/// Every media input of a job, in the order the operation uses them.
pub fn media_inputs(job: &VideoJob) -> Vec<NamedInput<'_>> {
    let i = &job.inputs;
    let slots: [(&'static str, MediaKind, Vec<&MediaInput>); 7] = [
        ("image_url", MediaKind::Image, i.image.iter().collect()),
        (
            "start_image",
            MediaKind::Image,
            i.start_image.iter().collect(),
        ),
        ("end_image", MediaKind::Image, i.end_image.iter().collect()),
        (
            "reference_images",
            MediaKind::Image,
            i.reference_images.iter().collect(),
        ),
        ("video_url", MediaKind::Video, i.video.iter().collect()),
        (
            "video_urls",
            MediaKind::Video,
            i.reference_videos.iter().collect(),
        ),
        (
            "audio_urls",
            MediaKind::Audio,
            i.reference_audios.iter().collect(),
        ),
    ];
    slots
        .into_iter()
        .flat_map(|(field, kind, inputs)| {
            inputs
                .into_iter()
                .map(move |input| NamedInput { field, kind, input })
        })
        .collect()
}
