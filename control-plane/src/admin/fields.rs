//! Reads a JSON object field by field, so that every 400 names the field and the expected form.
//! Unknown fields are refused (a typo should not be silently ignored); read-only fields that GET
//! returns may be sent back and are ignored.

use axum::body::Bytes;
use serde_json::{Map, Value};

use super::error::ApiError;

pub struct Fields {
    map: Map<String, Value>,
}

impl Fields {
    pub fn parse(body: &Bytes, accepted: &[&str], read_only: &[&str]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(ApiError::bad_request("request body must be a JSON object"));
        };
        if let Some(unknown) = map
            .keys()
            .find(|k| !accepted.contains(&k.as_str()) && !read_only.contains(&k.as_str()))
        {
            return Err(ApiError::bad_request(format!(
                "unknown field '{unknown}'; accepted fields: {}",
                accepted.join(", ")
            )));
        }
        Ok(Self { map })
    }

    fn present(&self, name: &str) -> Option<&Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    pub fn is_explicit_null(&self, name: &str) -> bool {
        matches!(self.map.get(name), Some(Value::Null))
    }

    pub fn string(&self, name: &'static str) -> Result<Option<String>, ApiError> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::invalid(name, "expected a string")),
        }
    }

    pub fn required_string(&self, name: &'static str) -> Result<String, ApiError> {
        self.string(name)?
            .ok_or_else(|| ApiError::invalid(name, "required, a non-empty string"))
    }

    pub fn bool(&self, name: &'static str) -> Result<Option<bool>, ApiError> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::invalid(name, "expected true or false")),
        }
    }

    pub fn u32(&self, name: &'static str) -> Result<Option<u32>, ApiError> {
        match self.present(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    ApiError::invalid(
                        name,
                        "expected a whole number from 0 to 4294967295 (0: no cap)",
                    )
                }),
        }
    }

    /// A token count or cap: a whole number up to 2^53 - 1, the largest a JSON number carries
    /// exactly in every client (JavaScript's `Number.MAX_SAFE_INTEGER`).
    pub fn token_count(&self, name: &'static str) -> Result<Option<u64>, ApiError> {
        const MAX: u64 = (1 << 53) - 1;
        match self.present(name) {
            None => Ok(None),
            Some(v) => v.as_u64().filter(|n| *n <= MAX).map(Some).ok_or_else(|| {
                ApiError::invalid(
                    name,
                    format!("expected a whole number from 0 to {MAX} (0: no cap)"),
                )
            }),
        }
    }

    pub fn string_list(&self, name: &'static str) -> Result<Option<Vec<String>>, ApiError> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| ApiError::invalid(name, "expected an array of id strings")),
            Some(_) => Err(ApiError::invalid(name, "expected an array of id strings")),
        }
    }
}
