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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tickwire-loadtest: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), tickwire_loadtest::Error> {
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
        })
}
