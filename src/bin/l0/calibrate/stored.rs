//! Settings as stored, for any struct of settings that serde reads and
//! writes (the calibrate command's `Settings`): summary.json's `settings`
//! object (each setting as its JSON type) and a checkpoint's `name = text`
//! pairs (the format checkpoints have always had, so that older ones still
//! resume). Reading the pairs back goes through serde too: a small
//! deserializer that parses each stored text as the type its field has.

use super::*;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::Serialize;
use serde_json::Value;

/// The text of `normalize_groups` in the settings of a run without
/// groups, where it does not apply (null in summary.json).
pub(crate) const NO_GROUPS: &str = "n/a";

/// The settings as serde_json's object, fields in declaration order.
fn object<S: Serialize>(s: &S) -> serde_json::Map<String, Value> {
    match serde_json::to_value(s) {
        Ok(Value::Object(m)) => m,
        // A struct of numbers, strings and lists always serializes to an object.
        _ => serde_json::Map::new(),
    }
}

/// A stored value's text: numbers as Rust prints them (`{:?}` for floats),
/// lists joined by commas, group multipliers as `ID=FACTOR,...`, unset as
/// empty text (`normalize_groups`: [`NO_GROUPS`]).
fn text(name: &str, v: &Value) -> String {
    match v {
        Value::Null if name == "normalize_groups" => NO_GROUPS.into(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => u.to_string(),
            (None, Some(i), _) => i.to_string(),
            (None, None, Some(x)) => format!("{x:?}"),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(|i| text(name, i)).collect();
            parts.join(",")
        }
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", text(name, v)))
                .collect();
            parts.join(",")
        }
    }
}

/// The settings as `(name, text)` pairs, in declaration order.
pub(crate) fn pairs<S: Serialize>(s: &S) -> Vec<(String, String)> {
    object(s)
        .iter()
        .map(|(k, v)| (k.clone(), text(k, v)))
        .collect()
}

/// serde_json's value as the report's JSON.
fn to_json(v: Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Json::Int(u as i128),
            (None, Some(i)) => Json::Int(i as i128),
            _ => Json::Num(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Json::Str(s),
        Value::Array(items) => Json::Array(items.into_iter().map(to_json).collect()),
        Value::Object(m) => Json::Object(m.into_iter().map(|(k, v)| (k, to_json(v))).collect()),
    }
}

/// The settings for summary.json, each as its JSON type.
pub(crate) fn json<S: Serialize>(s: &S) -> Vec<(String, Json)> {
    object(s)
        .into_iter()
        .map(|(k, v)| (k, to_json(v)))
        .collect()
}

/// The settings a checkpoint stored, each parsed as its field's type;
/// a setting the checkpoint lacks (one added since it was written) keeps
/// its value in `under`. Names the setting that does not parse.
pub(crate) fn read<S: Serialize + DeserializeOwned>(
    stored: &[(String, String)],
    under: &S,
) -> CliResult<S> {
    let under = object(under);
    S::deserialize(Layers {
        stored,
        under: &under,
    })
    .map_err(|e: de::value::Error| input_error(format!("checkpoint settings: {e}")))
}

/// The stored pairs over the values in `under`, as one struct.
struct Layers<'a> {
    stored: &'a [(String, String)],
    under: &'a serde_json::Map<String, Value>,
}

impl<'de> de::Deserializer<'de> for Layers<'_> {
    type Error = de::value::Error;
    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("the settings are read as a struct"))
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_map(Fields {
            fields: fields.iter(),
            layers: self,
            current: "",
        })
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// Each field of the struct in turn: its stored text, else its value below.
struct Fields<'a> {
    fields: std::slice::Iter<'static, &'static str>,
    layers: Layers<'a>,
    current: &'static str,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = de::value::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some(&name) = self.fields.next() else {
            return Ok(None);
        };
        self.current = name;
        seed.deserialize(name.into_deserializer()).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let name = self.current;
        let found = self.layers.stored.iter().find(|(n, _)| n == name);
        match found {
            Some((_, t)) => seed
                .deserialize(Text(t))
                .map_err(|e: de::value::Error| de::Error::custom(format!("{name} = '{t}': {e}"))),
            None => {
                let v = self.layers.under.get(name).cloned().unwrap_or(Value::Null);
                seed.deserialize(v).map_err(de::Error::custom)
            }
        }
    }
}

/// One stored text, parsed as the type asked for.
struct Text<'a>(&'a str);

impl<'de> IntoDeserializer<'de, de::value::Error> for Text<'_> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl Text<'_> {
    fn parse<T: std::str::FromStr>(&self, what: &str) -> Result<T, de::value::Error> {
        self.0
            .trim()
            .parse()
            .map_err(|_| de::Error::custom(format!("expected {what}")))
    }
    /// The items of a comma-separated list.
    fn items(&self) -> impl Iterator<Item = &str> {
        self.0.split(',').filter(|t| !t.is_empty())
    }
}

impl<'de> de::Deserializer<'de> for Text<'_> {
    type Error = de::value::Error;
    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_str(self.0)
    }
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_bool(self.parse("true or false")?)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_i64(self.parse("an integer")?)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_u64(self.parse("a whole number")?)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_f64(self.parse("a number")?)
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            "" | NO_GROUPS => v.visit_none(),
            _ => v.visit_some(self),
        }
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_seq(de::value::SeqDeserializer::new(self.items().map(Text)))
    }
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        let entries = self.items().map(|item| {
            let (k, f) = item.split_once('=').unwrap_or((item, ""));
            (Text(k), Text(f))
        });
        v.visit_map(de::value::MapDeserializer::new(entries))
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Self::Error> {
        v.visit_enum(self.0.into_deserializer())
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Self::Error> {
        v.visit_newtype_struct(self)
    }
    serde::forward_to_deserialize_any! {
        i8 i16 i32 i128 u8 u16 u32 u128 f32 char str string
        bytes byte_buf unit unit_struct tuple
        tuple_struct struct identifier ignored_any
    }
}

/// Group multipliers (id -> factor) with the ids written as text, in the
/// order of their text (as summary.json has always listed them).
pub(crate) mod multipliers {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::BTreeMap;

    pub(crate) fn serialize<S: Serializer>(
        m: &BTreeMap<i64, f64>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let by_text: BTreeMap<String, f64> = m.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        s.collect_map(by_text)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<i64, f64>, D::Error> {
        BTreeMap::deserialize(d)
    }
}

/// Group ids written as text (as summary.json has always listed them).
pub(crate) mod ids {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(ids: &[i64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ids.iter().map(i64::to_string))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
        let texts = Vec::<String>::deserialize(d)?;
        texts
            .iter()
            .map(|t| t.trim().parse().map_err(D::Error::custom))
            .collect()
    }
}
