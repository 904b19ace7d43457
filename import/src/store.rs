//! The rootfs store under `/var/lib/sdme`.
