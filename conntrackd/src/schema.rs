//! How a configuration key is declared, once. [`section!`] declares one
//! table of the file: its serde struct (`#[serde(default,
//! deny_unknown_fields)]` in effect), its `Default` from the declared defaults, and its
//! rows of the key table ([`Key`]: dotted path, [`Kind`], help from the
//! field's doc, "[default: …]" from the declared default). [`choice!`]
//! declares an enumerated value as a serde enum whose names are what clap
//! offers, what the environment and the file accept (in any case), what the
//! tests enumerate and what the error lists. `config::keys` collects the
//! sections' rows into the table the environment variables and flags use.
//!
//! A bottom-layer module (like `event`): the components declare their own
//! sections with it, and `config` composes them.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::path::PathBuf;

/// How a key's value is written on the command line or in the environment.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Bool,
    Int,
    Str,
    /// One of these values (lower case, as documented).
    Enum(&'static [&'static str]),
    /// A URL whose scheme, the transport, is one of these.
    Url(&'static [&'static str]),
    /// A list of strings: repeat the flag; the environment takes a TOML array.
    List,
    /// A nested table with keys of its own (not a key itself).
    Table(fn() -> Vec<Key>),
}

impl PartialEq for Kind {
    /// Tables are equal when they hold the same key paths (function pointers do not compare reliably).
    fn eq(&self, other: &Self) -> bool {
        let paths = |f: fn() -> Vec<Key>| f().iter().map(|k| k.path).collect::<Vec<_>>();
        match (self, other) {
            (Kind::Bool, Kind::Bool) | (Kind::Int, Kind::Int) | (Kind::Str, Kind::Str) | (Kind::List, Kind::List) => true,
            (Kind::Enum(a), Kind::Enum(b)) | (Kind::Url(a), Kind::Url(b)) => a == b,
            (Kind::Table(a), Kind::Table(b)) => paths(*a) == paths(*b),
            _ => false,
        }
    }
}

impl Eq for Kind {}

/// One key of the file: every source of a value (file, environment, flag) and its help.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The dotted path, also the flag (`--sink.loki.enable`).
    pub path: &'static str,
    pub kind: Kind,
    /// The field's doc comment, lines joined.
    pub doc: &'static str,
    /// The declared default as the help shows it.
    pub default: fn() -> String,
}

impl Key {
    /// The flag's help: the doc and the default.
    pub fn help(&self) -> String {
        format!("{} [default: {}]", self.doc.trim(), (self.default)())
    }
}

/// The rows of `keys`, with nested tables' keys in place of the tables.
pub fn flatten(keys: &[Key]) -> Vec<Key> {
    keys.iter().flat_map(|k| if let Kind::Table(inner) = k.kind { flatten(&inner()) } else { vec![*k] }).collect()
}

/// An enumerated value declared with [`choice!`].
pub trait Choice: Sized + Copy + 'static {
    /// Every value's name, in declaration order.
    const NAMES: &'static [&'static str];
    fn name(self) -> &'static str;
    /// The value named `text`, in any case.
    fn from_name(text: &str) -> Option<Self>;
}

/// "a, b or c" for an error message.
pub fn or_list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// How a declared default is shown in the help.
pub trait Shown {
    fn shown(&self) -> String;
}

macro_rules! shown_by_display {
    ($($t:ty),*) => {
        $(impl Shown for $t {
            fn shown(&self) -> String {
                self.to_string()
            }
        })*
    };
}
shown_by_display!(bool, u64, usize, String);

impl Shown for PathBuf {
    fn shown(&self) -> String {
        self.display().to_string()
    }
}

impl Shown for Vec<String> {
    fn shown(&self) -> String {
        if self.is_empty() {
            "none".into()
        } else {
            self.join(", ")
        }
    }
}

impl<T: Shown> Shown for Option<T> {
    fn shown(&self) -> String {
        self.as_ref().map_or_else(|| "none".into(), Shown::shown)
    }
}

/// Declares an enumerated value: `choice! { /// doc  pub(crate) enum Name { A = "a", B = "b" } }`.
/// The enum gets `Debug`, `Clone`, `Copy`, `PartialEq`, `Eq`, [`Choice`],
/// [`Shown`] and a `Deserialize` that takes the names in any case and
/// otherwise fails with "expected a, b or c, found \"x\"".
macro_rules! choice {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $($variant),+
        }

        impl $crate::schema::Choice for $name {
            const NAMES: &'static [&'static str] = &[$($text),+];
            fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
            fn from_name(text: &str) -> Option<Self> {
                $(if text.eq_ignore_ascii_case($text) {
                    return Some(Self::$variant);
                })+
                None
            }
        }

        impl $crate::schema::Shown for $name {
            fn shown(&self) -> String {
                $crate::schema::Choice::name(*self).to_string()
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                <Self as $crate::schema::Choice>::from_name(&text).ok_or_else(|| {
                    let names = <Self as $crate::schema::Choice>::NAMES;
                    serde::de::Error::custom(format!("expected {}, found {text:?}", $crate::schema::or_list(names)))
                })
            }
        }
    };
}
pub(crate) use choice;

/// Declares one table of the configuration file:
///
/// ```text
/// section! {
///     /// `[source]`
///     pub(crate) struct RawSource at "source" {
///         /// Help text of the key (the doc comment).
///         ring_buffer_bytes: u64 = 4 << 20, Int;
///         /// A key whose default is described rather than a value.
///         netns: Vec<String> = vec!["self".into()], List, shown "self";
///     }
/// }
/// ```
///
/// gives the struct (every field `pub`) with a `Deserialize` that gives an
/// absent key (or one without a value) its declared default and refuses
/// unknown keys, `Default`, and `RawSource::keys()`: one [`Key`]
/// per field (`Table(…)` fields bring their table's keys). `at ""` is the
/// file's top level.
macro_rules! section {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident at $prefix:tt {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $ty:ty = $default:expr , $kind:ident $(($karg:expr))? $(, shown $shown:literal)? ;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        $vis struct $name {
            $(
                $(#[doc = $doc])*
                pub $field: $ty,
            )*
        }

        // Read through a twin whose every field is optional: an absent key
        // and a key without a value (YAML `key:`, JSON `null`) both get the
        // declared default; unknown keys are refused.
        const _: () = {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Written {
                $($field: Option<$ty>,)*
            }

            impl<'de> serde::Deserialize<'de> for $name {
                fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                    let written = <Written as serde::Deserialize>::deserialize(deserializer)?;
                    let mut out = <Self as Default>::default();
                    $(if let Some(value) = written.$field {
                        out.$field = value;
                    })*
                    Ok(out)
                }
            }
        };

        impl Default for $name {
            fn default() -> Self {
                Self { $($field: $default),* }
            }
        }

        impl $crate::schema::Shown for $name {
            fn shown(&self) -> String {
                "a table".into()
            }
        }

        impl $name {
            /// This table's keys, in declaration order.
            #[allow(dead_code)]
            pub fn keys() -> Vec<$crate::schema::Key> {
                vec![$(
                    $crate::schema::Key {
                        path: $crate::schema::section!(@path $prefix, $field),
                        kind: $crate::schema::Kind::$kind $(($karg))?,
                        doc: concat!($($doc),*),
                        default: {
                            fn shown() -> String {
                                $crate::schema::section!(@shown $name, $field $(, $shown)?)
                            }
                            shown
                        },
                    }
                ),*]
            }
        }
    };
    (@path "", $field:ident) => { stringify!($field) };
    (@path $prefix:tt, $field:ident) => { concat!($prefix, ".", stringify!($field)) };
    (@shown $name:ident, $field:ident, $shown:literal) => { String::from($shown) };
    (@shown $name:ident, $field:ident) => { $crate::schema::Shown::shown(&<$name as Default>::default().$field) };
}
pub(crate) use section;

#[cfg(test)]
mod tests {
    use super::*;

    choice! {
        /// A test choice.
        pub(crate) enum Colour { Red = "red", Light = "light-blue" }
    }

    section! {
        /// `[inner]`
        pub(crate) struct Inner at "outer.inner" {
            /// Deep.
            deep: bool = true, Bool;
        }
    }

    section! {
        /// `[outer]`
        pub(crate) struct Outer at "outer" {
            /// How many, at most.
            /// Second line.
            count: u64 = 7, Int;
            /// Which colour.
            colour: Colour = Colour::Light, Enum(Colour::NAMES);
            /// Optional path.
            path: Option<PathBuf> = None, Str, shown "the built-in one";
            /// The nested table.
            inner: Inner = Inner::default(), Table(Inner::keys);
        }
    }

    #[test]
    fn one_declaration_gives_struct_defaults_and_keys() {
        let o: Outer = toml::from_str("colour = \"RED\"\n[inner]\n").unwrap();
        assert_eq!((o.count, o.colour, o.path, o.inner.deep), (7, Colour::Red, None, true));
        let keys = flatten(&Outer::keys());
        let rows: Vec<(&str, String)> = keys.iter().map(|k| (k.path, k.help())).collect();
        assert_eq!(
            rows,
            [
                ("outer.count", "How many, at most. Second line. [default: 7]".to_string()),
                ("outer.colour", "Which colour. [default: light-blue]".to_string()),
                ("outer.path", "Optional path. [default: the built-in one]".to_string()),
                ("outer.inner.deep", "Deep. [default: true]".to_string()),
            ]
        );
        assert_eq!(keys[1].kind, Kind::Enum(&["red", "light-blue"]));
        let err = toml::from_str::<Outer>("colour = \"green\"\n").unwrap_err().to_string();
        assert!(err.contains("expected red or light-blue, found \"green\""), "{err}");
        let err = toml::from_str::<Outer>("colur = \"red\"\n").unwrap_err().to_string();
        assert!(err.contains("unknown field `colur`"), "{err}");
        let o: Outer = serde_json::from_str(r#"{"count": null, "colour": null, "path": null}"#).unwrap();
        assert_eq!((o.count, o.colour, o.path), (7, Colour::Light, None), "a key without a value gets its default");
    }
}
