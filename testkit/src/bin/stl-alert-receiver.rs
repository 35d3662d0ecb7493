//! The alert receiver as a process, for tests whose agents run in network
//! namespaces: `stl-alert-receiver ADDR SECS FILE` serves on ADDR for SECS
//! seconds, answers 200, and appends every request to FILE as a JSON line
//! (the test reads the file; the file system is shared across namespaces).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use starling_testkit::AlertReceiver;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, secs, file] = args.as_slice() else {
        eprintln!("usage: stl-alert-receiver ADDR SECS FILE");
        return ExitCode::FAILURE;
    };
    let (Ok(addr), Ok(secs)) = (addr.parse::<SocketAddr>(), secs.parse::<u64>()) else {
        eprintln!("stl-alert-receiver: ADDR must be ip:port and SECS a number");
        return ExitCode::FAILURE;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("stl-alert-receiver: no runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(async {
        let receiver = AlertReceiver::start_on(addr, Some(PathBuf::from(file))).await?;
        println!("listening {}", receiver.url());
        tokio::time::sleep(Duration::from_secs(secs)).await;
        Ok::<(), std::io::Error>(())
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("stl-alert-receiver: {error}");
            ExitCode::FAILURE
        }
    }
}
