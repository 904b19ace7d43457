//! The parts of a `Bind=`/`BindReadOnly=` value, nspawn's
//! `SRC[:DST[:OPTIONS]]`, for those that need the paths (the prepare
//! helper makes missing destinations under `PrivateUsers=`). The value
//! is checked where it is parsed (`container`); this only splits it.

/// Source and destination of a bind spec: the destination defaults to
/// the source, as nspawn's does (a `+` source is relative to the
/// container's root: its destination is that path).
pub fn source_and_destination(spec: &str) -> (&str, &str) {
    let mut parts = spec.splitn(3, ':');
    let src = parts.next().unwrap_or_default();
    let dst = match parts.next() {
        Some(d) => d,
        None => src.strip_prefix('+').unwrap_or(src),
    };
    (src, dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_defaults_to_the_source() {
        assert_eq!(source_and_destination("/srv"), ("/srv", "/srv"));
        assert_eq!(source_and_destination("/a:/b"), ("/a", "/b"));
        assert_eq!(source_and_destination("/a:/b:idmap"), ("/a", "/b"));
        assert_eq!(source_and_destination("+/in"), ("+/in", "/in"));
    }
}
