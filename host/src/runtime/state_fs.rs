//! The filesystem an IPAM module sees as `/state` holds regular files only.
//! wasmtime-wasi keeps every path inside the preopened directory, but
//! within it a module could make a symlink (`lock -> ../../x`: the next
//! call's host, or the reference host-local sharing the directory, would
//! follow it out), a hard link or a directory. Those three calls are
//! linked here in place of wasmtime-wasi's and refused with `not-permitted`,
//! so the module gets an error at the call instead of finding its entry
//! gone later (`StateDir` still removes anything that is not a regular
//! file, for state written by something else).

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::bindings::filesystem::types::{ErrorCode, PathFlags};

use super::sandbox::StoreData;

const INTERFACE: &str = "wasi:filesystem/types@0.2.12";

type Refusal = wasmtime::Result<(Result<(), ErrorCode>,)>;

fn refuse(what: &str) -> Refusal {
    tracing::warn!(
        "the module tried to make a {what} in its state directory; refused (only regular files)"
    );
    Ok((Err(ErrorCode::NotPermitted),))
}

/// Replaces wasmtime-wasi's `symlink-at`, `link-at` and
/// `create-directory-at`; call after linking wasi:filesystem/types.
pub fn add_to_linker(l: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    l.allow_shadowing(true);
    let mut i = l.instance(INTERFACE)?;
    i.func_wrap(
        "[method]descriptor.symlink-at",
        |_, (_, _, _): (Resource<Descriptor>, String, String)| refuse("symlink"),
    )?;
    i.func_wrap(
        "[method]descriptor.link-at",
        |_,
         (_, _, _, _, _): (
            Resource<Descriptor>,
            PathFlags,
            String,
            Resource<Descriptor>,
            String,
        )| refuse("hard link"),
    )?;
    i.func_wrap(
        "[method]descriptor.create-directory-at",
        |_, (_, _): (Resource<Descriptor>, String)| refuse("directory"),
    )?;
    l.allow_shadowing(false);
    Ok(())
}
