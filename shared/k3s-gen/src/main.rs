//! `k3s-gen`: writes (or with `--check` compares) the generated part of a
//! kustomize tree from a SAM template.

use std::path::PathBuf;

use clap::Parser;

/// Renders the k3s manifests derived from template.yaml.
#[derive(Debug, Parser)]
#[command(name = "k3s-gen", version)]
struct Args {
    /// The SAM template.
    #[arg(long, default_value = "template.yaml")]
    template: PathBuf,
    /// The kustomize tree to write into.
    #[arg(long, default_value = "k3s")]
    out: PathBuf,
    /// The ConfigMap whose keys the functions read through envFrom.
    #[arg(long, default_value = "k3s/base/configmap.yaml")]
    configmap: PathBuf,
    /// The product's names (labels, ConfigMap, Secret, images).
    #[arg(long, default_value = "k3s/generator.yaml")]
    settings: PathBuf,
    /// Compare instead of writing; exit 1 if anything differs.
    #[arg(long)]
    check: bool,
}

fn main() {
    let a = Args::parse();
    let files = sam_template::Template::load(&a.template)
        .and_then(|t| k3s_gen::Inputs::load(&a.configmap, &a.settings).map(|i| (t, i)))
        .and_then(|(t, i)| k3s_gen::render(&t, &i));
    let files = match files {
        Ok(f) => f,
        Err(e) => {
            eprintln!("k3s-gen: {e}");
            std::process::exit(64);
        }
    };
    match k3s_gen::sync(&a.out, &files, a.check) {
        Ok(stale) if stale.is_empty() => println!("k3s-gen: {} files up to date", files.len()),
        Ok(stale) if a.check => {
            eprintln!(
                "k3s-gen: out of date with template.yaml (run `make k3s`): {}",
                stale.join(", ")
            );
            std::process::exit(1);
        }
        Ok(stale) => println!("k3s-gen: wrote {}", stale.join(", ")),
        Err(e) => {
            eprintln!("k3s-gen: {e}");
            std::process::exit(64);
        }
    }
}
