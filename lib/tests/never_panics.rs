//! Property tests: no input makes the parser, the schema or the renderer
//! panic. Arbitrary bytes, and lines built from real keys with arbitrary
//! values (which reach much deeper than random bytes do).

use std::path::Path;

use proptest::prelude::*;
use sdme_core::container::Container;
use sdme_core::image::Image;
use sdme_core::keys::CONTAINER_KEYS;
use sdme_core::render::{render, render_image};
use sdme_core::search::UnitName;
use sdme_core::syntax::UnitFile;

/// Keys of the other sections; the `[Container]` keys come from the table.
const OTHER_KEYS: &[&str] = &[
    "Platform",
    "MaxSize",
    "WantedBy",
    "RequiredBy",
    "Alias",
    "DefaultInstance",
    "Description",
    "MemoryMax",
    "ExecStart",
];

fn keys() -> Vec<&'static str> {
    CONTAINER_KEYS
        .iter()
        .map(|k| k.key)
        .chain(OTHER_KEYS.iter().copied())
        .collect()
}

const SECTIONS: &[&str] = &[
    "[Container]",
    "[Image]",
    "[Unit]",
    "[Service]",
    "[Install]",
    "[X-Foo]",
    "[Bad",
];
const STEMS: &[&str] = &["web", "web@", "web@a", "a-b", "x@y@z", "", "-", "wéb"];

fn check(stem: &str, data: &[u8]) {
    let path = Path::new("/etc/sdme/f.container");
    if let Ok(f) = UnitFile::parse(path, data) {
        if let Ok(c) = Container::from_unit(UnitName::from_stem(stem), path, f.clone()) {
            let outs = render(&c);
            assert!(!outs.is_empty());
        }
        if let Ok(i) = Image::from_unit(&UnitName::from_stem(stem), path, f) {
            assert!(!render_image(&i).is_empty());
        }
    }
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(SECTIONS).prop_map(str::to_string),
        (prop::sample::select(keys()), any::<String>()).prop_map(|(k, v)| format!("{k}={v}")),
        (prop::sample::select(keys()), "[ -~]{0,40}").prop_map(|(k, v)| format!("{k}={v}")),
        (prop::sample::select(keys()), "[/a-z%$\"'\\\\:,. @-]{0,30}")
            .prop_map(|(k, v)| format!("{k}={v}")),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..512), stem in prop::sample::select(STEMS)) {
        check(stem, &data);
    }

    #[test]
    fn structured_lines(lines in prop::collection::vec(line(), 0..24), stem in prop::sample::select(STEMS), cont in any::<bool>()) {
        let sep = if cont { "\\\n" } else { "\n" };
        let mut text = String::from("[Container]\n");
        text.push_str(&lines.join(sep));
        check(stem, text.as_bytes());
    }
}
