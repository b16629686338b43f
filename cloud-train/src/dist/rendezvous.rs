//! Start-up rendezvous: rank 0 hands a small secret (NCCL's 128-byte unique id) to every other
//! rank over one TCP connection each to `MASTER_ADDR:MASTER_PORT`, as torchrun's store does.
//! Kept free of NCCL so that it is tested on every machine with any bytes as the id.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::Launch;

/// Why the id could not be handed out (names the rank, the address and the cause).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RendezvousError(pub String);

/// The size of NCCL's `ncclUniqueId`.
pub const ID_BYTES: usize = 128;

/// Rank 0: make the id with `make_id` and serve it to `world - 1` connections on
/// `0.0.0.0:MASTER_PORT`, failing when they have not all come within `timeout`. Others:
/// connect to `MASTER_ADDR:MASTER_PORT` (retrying until `timeout`: rank 0 may start later)
/// and read it. Every rank returns the same bytes.
pub fn exchange_id(
    launch: &Launch,
    timeout: Duration,
    make_id: impl FnOnce() -> Result<[u8; ID_BYTES], RendezvousError>,
) -> Result<[u8; ID_BYTES], RendezvousError> {
    let addr = format!("{}:{}", launch.master_addr, launch.master_port);
    if launch.rank == 0 {
        let bytes = make_id()?;
        let listener = TcpListener::bind(("0.0.0.0", launch.master_port)).map_err(|e| {
            RendezvousError(format!(
                "rank 0: listening on port {} (MASTER_PORT): {e}",
                launch.master_port
            ))
        })?;
        // Polled, so that a rank that never starts ends the job after `timeout`.
        listener
            .set_nonblocking(true)
            .map_err(|e| RendezvousError(format!("rank 0: {addr}: {e}")))?;
        let start = Instant::now();
        let mut served = 1;
        while served < launch.world {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false)
                        .and_then(|()| s.write_all(&bytes))
                        .map_err(|e| {
                            RendezvousError(format!("rank 0: sending the unique id: {e}"))
                        })?;
                    served += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if start.elapsed() > timeout {
                        return Err(RendezvousError(format!(
                            "rank 0: only {served} of {} ranks came for the unique id at {addr} within {:.0} s",
                            launch.world,
                            timeout.as_secs_f64()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(RendezvousError(format!("rank 0: accepting on {addr}: {e}"))),
            }
        }
        return Ok(bytes);
    }
    let start = Instant::now();
    loop {
        match TcpStream::connect(&addr) {
            Ok(mut s) => {
                let mut buf = [0u8; ID_BYTES];
                s.set_read_timeout(Some(timeout)).ok();
                s.read_exact(&mut buf).map_err(|e| {
                    RendezvousError(format!("rank {}: reading the unique id from {addr}: {e}", launch.rank))
                })?;
                return Ok(buf);
            }
            Err(e) if start.elapsed() > timeout => {
                return Err(RendezvousError(format!(
                    "rank {}: rank 0 did not answer at {addr} (MASTER_ADDR:MASTER_PORT) within {:.0} s: {e}",
                    launch.rank,
                    timeout.as_secs_f64()
                )))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::LaunchSource;

    /// A port the OS says is free now (bound, then released).
    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port()
    }

    fn launch(rank: usize, world: usize, port: u16) -> Launch {
        Launch {
            rank,
            world,
            local_rank: rank,
            master_addr: "127.0.0.1".into(),
            master_port: port,
            source: LaunchSource::Torchrun,
        }
    }

    fn fake_id() -> [u8; ID_BYTES] {
        std::array::from_fn(|i| (i * 7 + 3) as u8)
    }

    #[test]
    fn every_rank_gets_rank_0s_id_over_master_port() {
        let port = free_port();
        let world = 4;
        // The others start first and retry until rank 0 listens.
        let others: Vec<_> = (1..world)
            .map(|r| {
                std::thread::spawn(move || {
                    exchange_id(&launch(r, world, port), Duration::from_secs(10), || {
                        Err(RendezvousError("only rank 0 makes the id".into()))
                    })
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let root = exchange_id(&launch(0, world, port), Duration::from_secs(10), || {
            Ok(fake_id())
        });
        assert_eq!(root, Ok(fake_id()));
        for h in others {
            assert_eq!(h.join().expect("rank thread"), Ok(fake_id()));
        }
    }

    #[test]
    fn a_rank_at_the_wrong_port_times_out_naming_master_addr() {
        let port = free_port();
        let wrong = free_port();
        let root = std::thread::spawn(move || {
            exchange_id(&launch(0, 2, port), Duration::from_millis(600), || {
                Ok(fake_id())
            })
        });
        let other = exchange_id(&launch(1, 2, wrong), Duration::from_millis(600), || {
            Err(RendezvousError("unused".into()))
        });
        let e = other.expect_err("nobody listens at the wrong port");
        assert!(
            e.0.contains(&format!("127.0.0.1:{wrong}")) && e.0.contains("MASTER_ADDR:MASTER_PORT"),
            "{e}"
        );
        let e = root
            .join()
            .expect("root thread")
            .expect_err("rank 1 never came");
        assert!(e.0.contains("only 1 of 2 ranks"), "{e}");
    }

    #[test]
    fn a_taken_port_is_a_clear_error_on_rank_0() {
        let held = TcpListener::bind("0.0.0.0:0").expect("bind");
        let port = held.local_addr().expect("addr").port();
        let e = exchange_id(&launch(0, 2, port), Duration::from_millis(200), || {
            Ok(fake_id())
        })
        .expect_err("port in use");
        assert!(e.0.contains(&format!("port {port} (MASTER_PORT)")), "{e}");
    }
}
