//! Ark's prompt commands: Ark reads `--rs 1080p --dur 12 --rt 9:16 --seed 7 --wm true
//! --cf false` inside a prompt as if they were the request's own fields. Forwarded unread they
//! would make the upstream render a video other than the one validated and priced here, so
//! each command is read into its field, taken out of the prompt, and then validated and
//! priced with the rest of the request. A command that disagrees with its field, or with
//! itself, is refused: the gateway never guesses which one the client meant.

use serde_json::{Map, Value};

use crate::error::{ApiError, ErrorCode};

/// How a command's value is read.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Integer,
    Boolean,
}

/// A prompt command: its names, the request field it sets with every alias of that field,
/// and how its value is read.
struct Command {
    names: &'static [&'static str],
    fields: &'static [&'static str],
    kind: Kind,
}

const COMMANDS: [Command; 7] = [
    Command {
        names: &["rs", "resolution"],
        fields: &["resolution"],
        kind: Kind::Text,
    },
    Command {
        names: &["rt", "ratio"],
        fields: &["aspect_ratio", "ratio"],
        kind: Kind::Text,
    },
    Command {
        names: &["dur", "duration"],
        fields: &["duration", "seconds"],
        kind: Kind::Integer,
    },
    Command {
        names: &["seed"],
        fields: &["seed"],
        kind: Kind::Integer,
    },
    Command {
        names: &["wm", "watermark"],
        fields: &["watermark"],
        kind: Kind::Boolean,
    },
    Command {
        names: &["cf", "camerafixed"],
        fields: &["camera_fixed"],
        kind: Kind::Boolean,
    },
    Command {
        names: &["fps", "framepersecond"],
        fields: &["fps"],
        kind: Kind::Integer,
    },
];

fn refuse(code: ErrorCode, message: String) -> ApiError {
    ApiError::new(code, message).with_param("prompt")
}

/// The whitespace-separated words of `text`, with where each starts and ends.
fn words(text: &str) -> Vec<(usize, usize)> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                words.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push((s, text.len()));
    }
    words
}

fn read_value(kind: Kind, command: &str, text: &str) -> Result<Value, ApiError> {
    let value = match kind {
        Kind::Text => Some(Value::from(text)),
        Kind::Integer => text.parse::<i64>().ok().map(Value::from),
        Kind::Boolean => match text {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
    };
    value.ok_or_else(|| {
        let expected = match kind {
            Kind::Text => "a value",
            Kind::Integer => "an integer",
            Kind::Boolean => "true or false",
        };
        refuse(
            ErrorCode::InvalidPromptCommand,
            format!("The prompt command `--{command}` takes {expected}, not `{text}`."),
        )
    })
}

/// The request with the prompt's commands moved into their fields and out of the prompt.
/// A request whose prompt has no command is returned as it came.
pub(crate) fn apply(mut map: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let Some(Value::String(prompt)) = map.get("prompt") else {
        return Ok(map);
    };
    let words = words(prompt);
    let mut found: Vec<(&Command, &'static str, Value)> = Vec::new();
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let (start, end) = words[i];
        let command = prompt[start..end].strip_prefix("--").and_then(|word| {
            COMMANDS.iter().find_map(|c| {
                c.names
                    .iter()
                    .find(|name| **name == word)
                    .map(|name| (*name, c))
            })
        });
        let Some((name, command)) = command else {
            i += 1;
            continue;
        };
        let Some(&(value_start, value_end)) = words.get(i + 1) else {
            return Err(refuse(
                ErrorCode::InvalidPromptCommand,
                format!("The prompt command `--{name}` needs a value after it."),
            ));
        };
        let value = read_value(command.kind, name, &prompt[value_start..value_end])?;
        if command.fields == ["fps"] {
            return Err(ApiError::new(
                ErrorCode::UnsupportedParameter,
                format!("The prompt command `--{name}` is not supported by Seedance models: their videos are 24 fps. Remove it."),
            )
            .with_param("prompt"));
        }
        found.push((command, name, value));
        cuts.push((start, value_end));
        i += 2;
    }
    if found.is_empty() {
        return Ok(map);
    }

    let mut stripped = String::with_capacity(prompt.len());
    let mut from = 0;
    for &(start, end) in &cuts {
        stripped.push_str(&prompt[from..start]);
        from = end;
    }
    stripped.push_str(&prompt[from..]);
    let stripped = words_joined(&stripped);

    for (index, (command, name, value)) in found.iter().enumerate() {
        let earlier = found[..index]
            .iter()
            .find(|(other, _, _)| std::ptr::eq(*other, *command));
        if let Some((_, other_name, other_value)) = earlier {
            if other_value != value {
                return Err(refuse(
                    ErrorCode::PromptCommandConflict,
                    format!("The prompt sets `--{other_name}` twice, to {other_value} and {value}; keep one."),
                ));
            }
            continue;
        }
        let sent = command.fields.iter().find_map(|field| {
            map.get(*field)
                .filter(|v| !v.is_null())
                .map(|v| (*field, v))
        });
        match sent {
            Some((_, sent)) if sent == value => {}
            Some((field, sent)) => {
                return Err(refuse(
                    ErrorCode::PromptCommandConflict,
                    format!("The prompt's `--{name} {}` disagrees with `{field}: {sent}`; set it in one place.", plain(value)),
                ))
            }
            None => {
                map.insert(command.fields[0].to_owned(), value.clone());
            }
        }
    }
    map.insert("prompt".to_owned(), Value::String(stripped));
    Ok(map)
}

/// What is left of a prompt once its commands are cut out, without the runs of spaces the
/// cuts leave; line breaks the client wrote are kept.
fn words_joined(text: &str) -> String {
    text.lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn applied(body: Value) -> Result<Value, ApiError> {
        let Value::Object(map) = body else {
            unreachable!()
        };
        apply(map).map(Value::Object)
    }

    #[test]
    fn prompt_commands_become_fields_and_leave_the_prompt() {
        let got = applied(json!({"model": "m",
            "prompt": "a cat --rs 1080p --dur 12 --rt 9:16 --seed 7 --wm true --cf false"}))
        .unwrap();
        assert_eq!(
            got,
            json!({"model": "m", "prompt": "a cat", "resolution": "1080p", "duration": 12,
                "aspect_ratio": "9:16", "seed": 7, "watermark": true, "camera_fixed": false})
        );
        let long =
            applied(json!({"prompt": "--resolution 480p a\ncat --duration 5 walks"})).unwrap();
        assert_eq!(
            long,
            json!({"prompt": "a\ncat walks", "resolution": "480p", "duration": 5})
        );
    }

    #[test]
    fn a_prompt_without_commands_is_left_as_sent() {
        let body = json!({"prompt": "  two  spaces -- and --unknown flags\n\nstay  "});
        assert_eq!(applied(body.clone()).unwrap(), body);
    }

    #[test]
    fn a_prompt_command_that_agrees_with_its_field_is_accepted() {
        let got = applied(json!({"prompt": "x --rt 16:9", "ratio": "16:9"})).unwrap();
        assert_eq!(got, json!({"prompt": "x", "ratio": "16:9"}));
    }

    #[test]
    fn a_prompt_command_that_disagrees_is_refused() {
        let cases = [
            (
                json!({"prompt": "x --rs 1080p", "resolution": "720p"}),
                "prompt_command_conflict",
            ),
            (
                json!({"prompt": "x --dur 5 --dur 6"}),
                "prompt_command_conflict",
            ),
            (json!({"prompt": "x --dur five"}), "invalid_prompt_command"),
            (json!({"prompt": "x --wm yes"}), "invalid_prompt_command"),
            (json!({"prompt": "x --seed"}), "invalid_prompt_command"),
            (json!({"prompt": "x --fps 24"}), "unsupported_parameter"),
        ];
        for (body, code) in cases {
            let error = applied(body.clone()).unwrap_err();
            assert_eq!(error.code.as_str(), code, "{body}");
            assert_eq!(error.param.as_deref(), Some("prompt"), "{body}");
        }
    }
}
