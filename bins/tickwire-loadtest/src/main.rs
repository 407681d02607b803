//! `tickwire-loadtest`: see `--help` and `docs/loadtest.md`.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use tickwire_loadtest::{Args, Settings};

fn main() -> ExitCode {
    let args = Args::parse();
    if args.worker {
        return match tickwire_loadtest::worker::process_main() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tickwire-loadtest worker: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&args) {
        Ok(missed) if missed.is_empty() => ExitCode::SUCCESS,
        Ok(missed) => {
            for m in missed {
                eprintln!(
                    "tickwire-loadtest: threshold missed: {} is {} against {}",
                    m.name, m.value, m.limit
                );
            }
            ExitCode::from(tickwire_loadtest::thresholds::MISSED_EXIT)
        }
        Err(e) => {
            eprintln!("tickwire-loadtest: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the load and prints the report; returns the thresholds it missed.
fn run(
    args: &Args,
) -> Result<Vec<tickwire_loadtest::thresholds::Checked>, tickwire_loadtest::Error> {
    let mut settings = Settings::from_args(args)?;
    settings.worker_exe = std::env::current_exe().ok();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| tickwire_loadtest::Error::Io {
            what: "starting the runtime".into(),
            source: e,
        })?;
    let report = runtime.block_on(tickwire_loadtest::run(settings))?;
    let text = if args.json {
        let mut json = serde_json::to_string_pretty(&report).unwrap_or_default();
        json.push('\n');
        json
    } else {
        report.table()
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| tickwire_loadtest::Error::Io {
            what: "writing the report".into(),
            source: e,
        })?;
    Ok(report.thresholds.into_iter().filter(|c| !c.ok).collect())
}
