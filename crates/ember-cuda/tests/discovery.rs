//! Device discovery must never panic. On a machine without a GPU (CI) it returns an error that
//! says why; on a GPU machine it finds the device and rejects an ordinal past the last one.

use ember_cuda::{CudaDevice, CudaError, device_count, driver_available};

#[test]
fn discovery_answers_without_panicking() {
    let count = device_count();
    let dev = CudaDevice::get(0);
    match (&count, &dev) {
        (Ok(n), Ok(d)) if *n > 0 => {
            println!("found {n} device(s); cuda:0 is {} ({})", d.name(), d.arch());
            let past = CudaDevice::get(*n);
            assert!(
                matches!(past, Err(CudaError::InvalidOrdinal { ordinal, count }) if ordinal == *n && count == *n),
                "ordinal {n} of {n} devices: {past:?}"
            );
            // The same device is shared, with one stream.
            let again = CudaDevice::get(0).expect("second get");
            assert!(std::sync::Arc::ptr_eq(d, &again));
        }
        _ => {
            println!("no GPU here: device_count = {count:?}, get(0) = {dev:?}");
            let e = dev.expect_err("no device count, yet a device was created");
            if !driver_available() {
                assert_eq!(e, CudaError::DriverLibraryMissing);
                assert_eq!(count, Err(CudaError::DriverLibraryMissing));
            } else {
                assert!(matches!(
                    e,
                    CudaError::NoDevice
                        | CudaError::DriverBroken { .. }
                        | CudaError::UnsupportedDevice { .. }
                ));
            }
            // The message says what is missing.
            assert!(!e.to_string().is_empty());
        }
    }
}

#[test]
fn out_of_memory_names_the_size() {
    // Without a GPU only the message can be checked; with one, ask for far more than exists.
    let msg = CudaError::OutOfMemory {
        bytes: 3 << 40,
        ordinal: 0,
    }
    .to_string();
    assert!(
        msg.contains("3298534883328 bytes") && msg.contains("3072.00 GiB"),
        "{msg}"
    );
    if let Ok(dev) = CudaDevice::get(0) {
        let huge = 1usize << 50; // 1 PiB of f32
        match dev.alloc::<f32>(huge / 4) {
            Err(CudaError::OutOfMemory { bytes, .. }) => assert_eq!(bytes, huge),
            other => panic!("expected OutOfMemory, got {other:?}"),
        }
    }
}
