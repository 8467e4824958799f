//! The NCCL communicator on this machine's GPU 0, as a 1-rank group: the collectives round-trip
//! host data through the GPU unchanged. Skips (printing `SKIPPED:` and why) where there is no
//! CUDA driver, no libnccl or no GPU. Several GPUs (one process each under mpirun) are not
//! tested here.
#![cfg(feature = "nccl")]

use ember_comm::nccl::Nccl;
use ember_comm::{Communicator, SingleProcess};

#[test]
fn one_rank_collectives_round_trip_through_the_gpu() {
    let c = match Nccl::init(&SingleProcess, 0) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("SKIPPED: NCCL is not usable here: {e}");
            return;
        }
    };
    assert_eq!((c.rank(), c.size()), (0, 1));
    let mut v = vec![1.5f32, -2.0, 3.25];
    c.all_reduce_sum_f32(&mut v).unwrap();
    assert_eq!(v, [1.5, -2.0, 3.25]);
    assert_eq!(c.all_gather_v_f64(&[4.0, 5.0], &[2]).unwrap(), [4.0, 5.0]);
    let mut b = b"ember".to_vec();
    c.broadcast_bytes(&mut b, 0).unwrap();
    assert_eq!(b, b"ember");
    c.barrier().unwrap();
}
