//! Where an import run hands over to the importers of remote and image
//! sources. Each takes the [`Job`]: the tree to fill (`job.root`), a
//! scratch directory, the options, progress, the size budget and the
//! metadata to complete. The OCI and URL importers (`crate::oci`,
//! `crate::http`) are wired in here by their owners; until then these
//! refuse clearly.

use anyhow::{bail, Result};

use crate::import::Job;

/// An http:// or https:// URL: a tarball (or disk image) downloaded and
/// unpacked (see `crate::tarball::unpack` for streams).
pub fn url(job: &mut Job) -> Result<()> {
    bail!("URL sources are not supported yet ({})", job.source)
}

/// A registry reference, an OCI layout directory, an oci-archive or a
/// docker-save tarball (`job.kind` says which). Layers are applied in
/// order with `crate::tarball::unpack(reader, job.root, &job.apply_opts(true))`;
/// `job.meta` gets the digest, platform and image config.
pub fn oci(job: &mut Job) -> Result<()> {
    bail!(
        "{} sources are not supported yet ({})",
        job.kind.type_name(),
        job.source
    )
}
