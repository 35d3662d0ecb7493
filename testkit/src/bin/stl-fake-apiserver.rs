//! The fake kube-apiserver as a process, for tests whose agents run in
//! network namespaces (an in-process server cannot bind there).
//!
//! `stl-fake-apiserver ADDR SECS DIR`: serve on ADDR for SECS seconds,
//! write `DIR/kubeconfig`, keep the scheduler's and the controller
//! manager's leader leases fresh (as live leaders would), and print
//! `listening <url>` then `probe-pods <n>` whenever the number of pods in
//! the `starling-probe` namespace changes — so a test can prove that no
//! two probe pods ever existed at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use starling_testkit::FakeApiServer;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, secs, dir] = args.as_slice() else {
        eprintln!("usage: stl-fake-apiserver ADDR SECS DIR");
        return ExitCode::FAILURE;
    };
    let (Ok(addr), Ok(secs)) = (addr.parse::<SocketAddr>(), secs.parse::<u64>()) else {
        eprintln!("stl-fake-apiserver: ADDR must be ip:port and SECS a number");
        return ExitCode::FAILURE;
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("stl-fake-apiserver: no runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(addr, Duration::from_secs(secs), PathBuf::from(dir))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("stl-fake-apiserver: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(addr: SocketAddr, lifetime: Duration, dir: PathBuf) -> std::io::Result<()> {
    let api = FakeApiServer::start_on(addr).await?;
    api.write_kubeconfig(&dir)?;
    println!("listening {}", api.url());
    let end = Instant::now() + lifetime;
    let mut last = usize::MAX;
    while Instant::now() < end {
        for lease in ["kube-scheduler", "kube-controller-manager"] {
            api.set_lease("kube-system", lease, "fake-leader", SystemTime::now());
        }
        let pods = api.pods("starling-probe").len();
        if pods != last {
            println!("probe-pods {pods}");
            last = pods;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    api.shutdown().await;
    Ok(())
}
