// Sizes in tests read as sizes: 8 * MiB, not 8388608.
export const KiB = 1024;
export const MiB = 1024 * 1024;
