//! What clients send, checked in full before anything reaches the production, and the
//! JSON error every refusal is answered with.

use std::collections::HashMap;
use std::fmt;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use serde_json::{json, Value};

/// Largest request body accepted, in bytes (as the rest of the HTTP server).
pub const BODY_LIMIT: usize = 1024 * 1024;
/// Page size of `GET /training/` when none is asked for.
pub const DEFAULT_LIMIT: i64 = 100;
/// Largest page size; larger asks are cut to it.
pub const MAX_LIMIT: i64 = 1000;

/// Fields a training body may have.
const FIELDS: [&str; 3] = ["id", "nom", "salle"];

/// A refused or failed request, answered as `{"error": ..., "field": ...}` (input
/// errors) or `{"error": ..., "session_id": ...}` (production errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestError {
    pub status: StatusCode,
    pub error: String,
    /// The body, path or query field at fault.
    pub field: Option<String>,
    /// The session of the production call that failed, to look at its trace.
    pub session_id: Option<i64>,
}

impl RestError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            field: None,
            session_id: None,
        }
    }

    /// 400: the input cannot be read (syntax, wrong type).
    pub fn bad(error: impl Into<String>, field: Option<&str>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error).with_field(field)
    }

    /// 422: readable input whose content is refused (missing field, empty, range).
    pub fn unprocessable(error: impl Into<String>, field: &str) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, error).with_field(Some(field))
    }

    pub fn with_field(mut self, field: Option<&str>) -> Self {
        self.field = field.map(str::to_string);
        self
    }

    pub fn with_session(mut self, session_id: i64) -> Self {
        self.session_id = Some(session_id);
        self
    }

    /// Whether this is about the client's input (the body carries `field`).
    fn is_input_error(&self) -> bool {
        matches!(
            self.status,
            StatusCode::BAD_REQUEST
                | StatusCode::PAYLOAD_TOO_LARGE
                | StatusCode::UNSUPPORTED_MEDIA_TYPE
                | StatusCode::UNPROCESSABLE_ENTITY
        )
    }

    pub fn body(&self) -> Value {
        let mut body = json!({ "error": self.error });
        if self.is_input_error() {
            body["field"] = json!(self.field);
        }
        if let Some(sid) = self.session_id {
            body["session_id"] = json!(sid);
        }
        body
    }
}

impl fmt::Display for RestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.error)
    }
}

impl ResponseError for RestError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Busy or disabled: worth trying again shortly.
            response.insert_header((actix_web::http::header::RETRY_AFTER, "1"));
        }
        response.json(self.body())
    }
}

/// A training as a client writes it; `id` is optional only where the path gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormationInput {
    pub id: Option<i64>,
    pub nom: String,
    pub salle: String,
}

/// Refuse a body that is not declared as JSON (`application/json` or `*/*+json`).
pub fn check_content_type(content_type: Option<&str>) -> Result<(), RestError> {
    let unsupported = |what: &str| {
        RestError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type must be application/json, got {what}"),
        )
    };
    let Some(value) = content_type else {
        return Err(unsupported("none"));
    };
    let mime = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        Ok(())
    } else {
        Err(unsupported(&format!("'{value}'")))
    }
}

/// Parse and check a training body. With `id_required`, a missing `id` is refused.
pub fn parse_formation(body: &[u8], id_required: bool) -> Result<FormationInput, RestError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(RestError::bad(
            "request body is empty: expected a JSON object {\"id\", \"nom\", \"salle\"}",
            None,
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| RestError::bad(format!("malformed JSON: {e}"), None))?;
    let Value::Object(object) = value else {
        return Err(RestError::bad(
            format!(
                "expected a JSON object {{\"id\", \"nom\", \"salle\"}}, got {}",
                kind(&value)
            ),
            None,
        ));
    };
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(RestError::unprocessable(
            format!("unknown field '{unknown}' (expected id, nom, salle)"),
            unknown,
        ));
    }
    let id = match object.get("id") {
        Some(v) => Some(id_value(v)?),
        None if id_required => {
            return Err(RestError::unprocessable("missing field 'id'", "id"));
        }
        None => None,
    };
    let nom = text_value(object.get("nom"), "nom")?;
    let salle = text_value(object.get("salle"), "salle")?;
    Ok(FormationInput { id, nom, salle })
}

/// An id in a body: an integer from 1 to `i64::MAX`.
fn id_value(value: &Value) -> Result<i64, RestError> {
    let out_of_range = || {
        RestError::unprocessable(
            format!("field 'id' must be between 1 and {}, got {value}", i64::MAX),
            "id",
        )
    };
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                if i >= 1 {
                    Ok(i)
                } else {
                    Err(out_of_range())
                }
            } else if n.as_u64().is_some() {
                Err(out_of_range())
            } else {
                // A float: a whole one beyond i64 is out of range, anything else is not
                // an integer.
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() >= i64::MAX as f64 => {
                        Err(out_of_range())
                    }
                    _ => Err(RestError::bad(
                        format!("field 'id' must be an integer, got {value}"),
                        Some("id"),
                    )),
                }
            }
        }
        other => Err(RestError::bad(
            format!("field 'id' must be an integer, got {}", kind(other)),
            Some("id"),
        )),
    }
}

/// A required text field, non-empty once trimmed; returned trimmed.
fn text_value(value: Option<&Value>, field: &str) -> Result<String, RestError> {
    match value {
        None => Err(RestError::unprocessable(
            format!("missing field '{field}'"),
            field,
        )),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                Err(RestError::unprocessable(
                    format!("field '{field}' must not be empty"),
                    field,
                ))
            } else {
                Ok(s.to_string())
            }
        }
        Some(other) => Err(RestError::bad(
            format!("field '{field}' must be a string, got {}", kind(other)),
            Some(field),
        )),
    }
}

/// The `{id}` of a path: an integer from 1 to `i64::MAX`.
pub fn parse_path_id(text: &str) -> Result<i64, RestError> {
    match text.parse::<i64>() {
        Ok(id) if id >= 1 => Ok(id),
        Ok(id) => Err(RestError::unprocessable(
            format!("id must be between 1 and {}, got {id}", i64::MAX),
            "id",
        )),
        Err(_) if is_integer_text(text) => Err(RestError::unprocessable(
            format!("id must be between 1 and {}, got {text}", i64::MAX),
            "id",
        )),
        Err(_) => Err(RestError::bad(
            format!("id '{text}' in the path is not an integer"),
            Some("id"),
        )),
    }
}

fn is_integer_text(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `limit` and `offset` of `GET /training/`: limit 1 to [`MAX_LIMIT`] (larger is cut
/// down), default [`DEFAULT_LIMIT`]; offset 0 or more, default 0.
pub fn parse_page(query: &str) -> Result<(i64, i64), RestError> {
    let params = web::Query::<HashMap<String, String>>::from_query(query)
        .map_err(|e| RestError::bad(format!("malformed query string: {e}"), None))?
        .into_inner();
    let number = |name: &str| -> Result<Option<i64>, RestError> {
        match params.get(name).map(|s| s.trim()) {
            None | Some("") => Ok(None),
            Some(s) => s.parse::<i64>().map(Some).map_err(|_| {
                RestError::bad(
                    format!("query parameter '{name}' must be an integer, got '{s}'"),
                    Some(name),
                )
            }),
        }
    };
    let limit = match number("limit")? {
        None => DEFAULT_LIMIT,
        Some(l) if l < 1 => {
            return Err(RestError::unprocessable(
                format!("limit must be at least 1, got {l}"),
                "limit",
            ))
        }
        Some(l) => l.min(MAX_LIMIT),
    };
    let offset = match number("offset")? {
        None => 0,
        Some(o) if o < 0 => {
            return Err(RestError::unprocessable(
                format!("offset must be 0 or more, got {o}"),
                "offset",
            ))
        }
        Some(o) => o,
    };
    Ok((limit, offset))
}

/// A JSON value's kind, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(r: Result<FormationInput, RestError>) -> (u16, Option<String>) {
        let e = r.expect_err("should be refused");
        (e.status.as_u16(), e.field)
    }

    #[test]
    fn a_complete_body_is_read_and_trimmed() {
        let f = parse_formation(br#"{"id": 3, "nom": " Intro ", "salle": "A"}"#, true).unwrap();
        assert_eq!(
            f,
            FormationInput {
                id: Some(3),
                nom: "Intro".into(),
                salle: "A".into()
            }
        );
        let f = parse_formation(br#"{"nom": "x", "salle": "y"}"#, false).unwrap();
        assert_eq!(f.id, None);
    }

    #[test]
    fn unreadable_bodies_are_400() {
        assert_eq!(status(parse_formation(b"", true)), (400, None));
        assert_eq!(status(parse_formation(b"  \n", true)), (400, None));
        assert_eq!(
            status(parse_formation(br#"{"id":2,"nom":"x""#, true)),
            (400, None)
        );
        assert_eq!(status(parse_formation(b"[1,2,3]", true)), (400, None));
        assert_eq!(status(parse_formation(b"null", true)), (400, None));
    }

    #[test]
    fn wrong_types_are_400_with_the_field() {
        let cases: [(&[u8], &str); 5] = [
            (br#"{"id":"two","nom":"x","salle":"y"}"#, "id"),
            (br#"{"id":1.5,"nom":"x","salle":"y"}"#, "id"),
            (br#"{"id":1,"nom":7,"salle":"y"}"#, "nom"),
            (br#"{"id":1,"nom":"x","salle":null}"#, "salle"),
            (br#"{"id":1,"nom":"x","salle":["y"]}"#, "salle"),
        ];
        for (body, field) in cases {
            assert_eq!(
                status(parse_formation(body, true)),
                (400, Some(field.into()))
            );
        }
    }

    #[test]
    fn missing_empty_out_of_range_and_unknown_fields_are_422() {
        let cases: [(&[u8], &str); 8] = [
            (br#"{"nom":"x","salle":"y"}"#, "id"),
            (br#"{"id":1,"salle":"y"}"#, "nom"),
            (br#"{"id":1,"nom":"x"}"#, "salle"),
            (br#"{"id":1,"nom":"  ","salle":"y"}"#, "nom"),
            (br#"{"id":0,"nom":"x","salle":"y"}"#, "id"),
            (br#"{"id":-4,"nom":"x","salle":"y"}"#, "id"),
            (br#"{"id":9223372036854775808,"nom":"x","salle":"y"}"#, "id"),
            (br#"{"id":1,"nom":"x","salle":"y","room":"z"}"#, "room"),
        ];
        for (body, field) in cases {
            assert_eq!(
                status(parse_formation(body, true)),
                (422, Some(field.into()))
            );
        }
        let huge = br#"{"id":1e30,"nom":"x","salle":"y"}"#;
        assert_eq!(
            status(parse_formation(huge, true)),
            (422, Some("id".into()))
        );
        let max = format!(r#"{{"id":{},"nom":"x","salle":"y"}}"#, i64::MAX);
        assert_eq!(
            parse_formation(max.as_bytes(), true).unwrap().id,
            Some(i64::MAX)
        );
    }

    #[test]
    fn only_json_content_types_pass() {
        assert!(check_content_type(Some("application/json")).is_ok());
        assert!(check_content_type(Some("Application/JSON; charset=utf-8")).is_ok());
        assert!(check_content_type(Some("application/merge-patch+json")).is_ok());
        for bad in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            assert_eq!(check_content_type(bad).unwrap_err().status.as_u16(), 415);
        }
    }

    #[test]
    fn path_ids() {
        assert_eq!(parse_path_id("42").unwrap(), 42);
        let e = parse_path_id("abc").unwrap_err();
        assert_eq!((e.status.as_u16(), e.field.as_deref()), (400, Some("id")));
        assert_eq!(parse_path_id("1.5").unwrap_err().status.as_u16(), 400);
        assert_eq!(parse_path_id("0").unwrap_err().status.as_u16(), 422);
        assert_eq!(parse_path_id("-3").unwrap_err().status.as_u16(), 422);
        assert_eq!(
            parse_path_id("99999999999999999999")
                .unwrap_err()
                .status
                .as_u16(),
            422
        );
    }

    #[test]
    fn pages() {
        assert_eq!(parse_page("").unwrap(), (DEFAULT_LIMIT, 0));
        assert_eq!(parse_page("limit=5&offset=10").unwrap(), (5, 10));
        assert_eq!(parse_page("limit=5000").unwrap(), (MAX_LIMIT, 0));
        assert_eq!(parse_page("limit=&offset=").unwrap(), (DEFAULT_LIMIT, 0));
        let e = parse_page("limit=ten").unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.field.as_deref()),
            (400, Some("limit"))
        );
        assert_eq!(parse_page("limit=0").unwrap_err().status.as_u16(), 422);
        assert_eq!(parse_page("offset=-1").unwrap_err().status.as_u16(), 422);
    }

    #[test]
    fn error_bodies() {
        let e = RestError::unprocessable("missing field 'id'", "id");
        assert_eq!(
            e.body(),
            json!({"error": "missing field 'id'", "field": "id"})
        );
        let e = RestError::new(StatusCode::BAD_GATEWAY, "boom").with_session(7);
        assert_eq!(e.body(), json!({"error": "boom", "session_id": 7}));
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn is_client_error(e: &RestError) -> bool {
        e.status.is_client_error() && !e.error.is_empty()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any bytes: a value or a 4xx with a message, never a panic.
        #[test]
        fn arbitrary_bodies_are_parsed_or_refused(body in proptest::collection::vec(any::<u8>(), 0..300), id_required in any::<bool>()) {
            if let Err(e) = parse_formation(&body, id_required) {
                prop_assert!(is_client_error(&e), "{e:?}");
            }
        }

        /// JSON-looking input, deep nesting and SQL included: refused or kept verbatim.
        #[test]
        fn json_like_bodies_keep_strings_verbatim(
            id in any::<i64>(),
            nom in "\\PC{0,40}",
            salle in prop_oneof![Just("'; DROP TABLE training; --".to_string()), "\\PC{0,20}"],
            depth in 0usize..200,
        ) {
            let deep = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            let body = serde_json::json!({"id": id, "nom": nom, "salle": salle}).to_string();
            match parse_formation(body.as_bytes(), true) {
                Ok(f) => {
                    prop_assert_eq!(f.nom.as_str(), nom.trim());
                    prop_assert_eq!(f.salle.as_str(), salle.trim());
                }
                Err(e) => prop_assert!(is_client_error(&e), "{e:?}"),
            }
            let nested = format!("{{\"id\": 1, \"nom\": {deep}, \"salle\": \"x\"}}");
            if let Err(e) = parse_formation(nested.as_bytes(), true) {
                prop_assert!(is_client_error(&e), "{e:?}");
            }
        }

        #[test]
        fn path_ids_and_pages_never_panic(text in "\\PC{0,30}") {
            if let Err(e) = parse_path_id(&text) { prop_assert!(is_client_error(&e)); }
            if let Err(e) = parse_page(&text) { prop_assert!(is_client_error(&e)); }
        }
    }
}
