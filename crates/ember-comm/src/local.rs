//! [`LocalGroup`]: p ranks as p threads of one process, for tests and examples.
//!
//! MPI needs a launcher and a system library; the data-parallel algorithm itself (who owns
//! which shard, what is exchanged, in which order it is summed) does not. A `LocalGroup`
//! gives each of p threads a [`Communicator`] whose collectives meet in shared memory, so
//! `cargo test` exercises 2- and 3-rank training without MPI installed.
//!
//! Every collective is one **exchange**: each rank deposits its bytes, the last to arrive
//! publishes all p deposits, and each rank computes its result from them in rank order (an
//! all-reduce sums rank 0's values first, then rank 1's, ...: deterministic). A rank that waits
//! longer than the group's timeout for its peers (one died or took another code path) gets an
//! error naming the collective instead of hanging.

use crate::{CommError, Communicator, Result, check_gather, err};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The state one round of exchange shares.
struct Round {
    /// Completed rounds; a waiting rank watches it change.
    generation: u64,
    /// This round's deposits, by rank.
    slots: Vec<Option<Vec<u8>>>,
    /// Ranks that deposited in this round.
    arrived: usize,
    /// The last completed round's deposits.
    result: Arc<Vec<Vec<u8>>>,
}

struct Shared {
    round: Mutex<Round>,
    cv: Condvar,
    size: usize,
    timeout: Duration,
}

/// A group of ranks living in one process; [`LocalGroup::ranks`] hands out one communicator per
/// rank, to be moved into that rank's thread.
pub struct LocalGroup;

impl LocalGroup {
    /// `size` communicators (ranks `0..size`) whose collectives fail after waiting `timeout`
    /// for the other ranks.
    pub fn ranks(size: usize, timeout: Duration) -> Vec<LocalComm> {
        let shared = Arc::new(Shared {
            round: Mutex::new(Round {
                generation: 0,
                slots: vec![None; size],
                arrived: 0,
                result: Arc::new(Vec::new()),
            }),
            cv: Condvar::new(),
            size,
            timeout,
        });
        (0..size)
            .map(|rank| LocalComm {
                shared: shared.clone(),
                rank,
            })
            .collect()
    }
}

/// One rank of a [`LocalGroup`].
pub struct LocalComm {
    shared: Arc<Shared>,
    rank: usize,
}

impl LocalComm {
    /// Deposits `data` and returns every rank's deposit of this round, in rank order.
    fn exchange(&self, op: &str, data: Vec<u8>) -> Result<Arc<Vec<Vec<u8>>>> {
        let s = &self.shared;
        let mut g = s
            .round
            .lock()
            .map_err(|_| CommError(format!("local {op}: a rank panicked inside a collective")))?;
        let mine = g.generation;
        if let Some(slot) = g.slots.get_mut(self.rank) {
            *slot = Some(data);
        }
        g.arrived += 1;
        if g.arrived == s.size {
            let all: Vec<Vec<u8>> = g
                .slots
                .iter_mut()
                .map(|x| x.take().unwrap_or_default())
                .collect();
            g.result = Arc::new(all);
            g.arrived = 0;
            g.generation += 1;
            s.cv.notify_all();
            return Ok(g.result.clone());
        }
        let deadline = Instant::now() + s.timeout;
        while g.generation == mine {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return err(format!(
                    "local {op}: rank {} waited {:?} for the other ranks of {} (one died or \
                     stopped calling collectives)",
                    self.rank, s.timeout, s.size
                ));
            }
            g = s
                .cv
                .wait_timeout(g, left)
                .map_err(|_| CommError(format!("local {op}: a rank panicked inside a collective")))?
                .0;
        }
        Ok(g.result.clone())
    }
}

fn to_bytes_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn to_bytes_f64(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32s(b: &[u8]) -> impl Iterator<Item = f32> + '_ {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

fn f64s(b: &[u8]) -> impl Iterator<Item = f64> + '_ {
    b.chunks_exact(8).map(|c| {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        f64::from_le_bytes(a)
    })
}

impl Communicator for LocalComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn name(&self) -> String {
        format!("local threads, rank {} of {}", self.rank, self.shared.size)
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        let all = self.exchange("all_reduce_sum", to_bytes_f32(buf))?;
        buf.iter_mut().for_each(|x| *x = 0.0);
        for part in all.iter() {
            if part.len() != buf.len() * 4 {
                return err("local all_reduce_sum: ranks passed different lengths");
            }
            buf.iter_mut().zip(f32s(part)).for_each(|(a, b)| *a += b);
        }
        Ok(())
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        let all = self.exchange("all_reduce_sum", to_bytes_f64(buf))?;
        buf.iter_mut().for_each(|x| *x = 0.0);
        for part in all.iter() {
            if part.len() != buf.len() * 8 {
                return err("local all_reduce_sum: ranks passed different lengths");
            }
            buf.iter_mut().zip(f64s(part)).for_each(|(a, b)| *a += b);
        }
        Ok(())
    }
    fn all_gather_v_f32(&self, send: &[f32], counts: &[usize]) -> Result<Vec<f32>> {
        let total = check_gather(
            "local all_gather_v",
            self.rank,
            self.size(),
            send.len(),
            counts,
        )?;
        let all = self.exchange("all_gather_v", to_bytes_f32(send))?;
        let out: Vec<f32> = all.iter().flat_map(|p| f32s(p)).collect();
        if out.len() != total {
            return err("local all_gather_v: the ranks' counts disagree");
        }
        Ok(out)
    }
    fn all_gather_v_f64(&self, send: &[f64], counts: &[usize]) -> Result<Vec<f64>> {
        let total = check_gather(
            "local all_gather_v",
            self.rank,
            self.size(),
            send.len(),
            counts,
        )?;
        let all = self.exchange("all_gather_v", to_bytes_f64(send))?;
        let out: Vec<f64> = all.iter().flat_map(|p| f64s(p)).collect();
        if out.len() != total {
            return err("local all_gather_v: the ranks' counts disagree");
        }
        Ok(out)
    }
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()> {
        let all = self.exchange("broadcast", to_bytes_f32(buf))?;
        let Some(src) = all.get(root) else {
            return err(format!("local broadcast: root {root} is not a rank"));
        };
        if src.len() != buf.len() * 4 {
            return err("local broadcast: ranks passed different lengths");
        }
        buf.iter_mut().zip(f32s(src)).for_each(|(a, b)| *a = b);
        Ok(())
    }
    fn broadcast_f64(&self, buf: &mut [f64], root: usize) -> Result<()> {
        let all = self.exchange("broadcast", to_bytes_f64(buf))?;
        let Some(src) = all.get(root) else {
            return err(format!("local broadcast: root {root} is not a rank"));
        };
        if src.len() != buf.len() * 8 {
            return err("local broadcast: ranks passed different lengths");
        }
        buf.iter_mut().zip(f64s(src)).for_each(|(a, b)| *a = b);
        Ok(())
    }
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<()> {
        let all = self.exchange("broadcast_bytes", buf.clone())?;
        let Some(src) = all.get(root) else {
            return err(format!("local broadcast_bytes: root {root} is not a rank"));
        };
        *buf = src.clone();
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        self.exchange("barrier", Vec::new()).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_threads_reduce_gather_and_broadcast() {
        let comms = LocalGroup::ranks(3, Duration::from_secs(20));
        let handles: Vec<_> = comms
            .into_iter()
            .map(|c| {
                std::thread::spawn(move || {
                    let r = c.rank();
                    let mut v = vec![r as f32 + 1.0; 2];
                    c.all_reduce_sum_f32(&mut v).unwrap();
                    let g = c.all_gather_v_f64(&vec![r as f64; r], &[0, 1, 2]).unwrap();
                    let mut b = vec![r as u8; r + 1];
                    c.broadcast_bytes(&mut b, 2).unwrap();
                    c.barrier().unwrap();
                    (v, g, b)
                })
            })
            .collect();
        for h in handles {
            let (v, g, b) = h.join().unwrap();
            assert_eq!(v, [6.0, 6.0]);
            assert_eq!(g, [1.0, 2.0, 2.0]);
            assert_eq!(b, [2, 2, 2]);
        }
    }

    #[test]
    fn a_missing_rank_is_an_error_after_the_timeout() {
        let mut comms = LocalGroup::ranks(2, Duration::from_millis(200));
        let _absent = comms.pop();
        let c = comms.pop().unwrap();
        let e = c.barrier().unwrap_err();
        assert!(e.0.contains("waited"), "{e}");
    }
}
