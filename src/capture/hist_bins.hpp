#pragma once
// The fixed, data-independent binning of excerpt maxima. It reads the float's bit pattern, so the
// bin of a value is exact and identical on every CPU and GPU (no log2, no rounding):
//   bin 0            x < 2^-10, including all negatives (post-GELU >= -0.17) and -0.0
//   bin 1 + 4*(e+10) + j   2^e * (1 + j/4) <= x < 2^e * (1 + (j+1)/4), e in [-10, 9], j in 0..3
//                    (j = the top two mantissa bits: four linear sub-bins per octave)
//   bin 81           x >= 2^10 (and +inf, +NaN)
// Constexpr on integers: device-callable. Interpolation edges (for quantile_boundaries) treat
// bin 0 as [0, 2^-10) and bin 81 as [2^10, 2^11).
#include <cstdint>

namespace nexplain {

inline constexpr std::uint32_t kHistBinsPerOctave = 4;
inline constexpr int kHistMinExp = -10;  // 2^-10: first edge
inline constexpr int kHistMaxExp = 10;   // 2^10: last edge
inline constexpr std::uint32_t kHistBins = 2 + kHistBinsPerOctave * (kHistMaxExp - kHistMinExp);  // 82
inline constexpr std::uint32_t kHistLowBits = static_cast<std::uint32_t>(127 + kHistMinExp) << 23;   // 0x3A800000
inline constexpr std::uint32_t kHistHighBits = static_cast<std::uint32_t>(127 + kHistMaxExp) << 23;  // 0x44800000

// Bin index of a float given by its IEEE-754 bits.
constexpr std::uint32_t hist_bin_from_bits(std::uint32_t bits) {
  if ((bits & 0x80000000u) || bits < kHistLowBits) return 0;
  if (bits >= kHistHighBits) return kHistBins - 1;
  // Exponent and the top two mantissa bits are contiguous: one subtraction and shift.
  return 1 + ((bits - kHistLowBits) >> 21);
}

// Interpolation interval [lower, upper) of a bin, in double (exact powers of two times 1..2).
constexpr double hist_bin_lower(std::uint32_t bin) {
  if (bin == 0) return 0.0;
  if (bin >= kHistBins - 1) return 1024.0;
  const std::uint32_t i = bin - 1;
  double octave = 1.0 / 1024.0;  // 2^-10
  for (std::uint32_t k = 0; k < i / kHistBinsPerOctave; ++k) octave *= 2.0;
  return octave * (1.0 + static_cast<double>(i % kHistBinsPerOctave) / kHistBinsPerOctave);
}
constexpr double hist_bin_upper(std::uint32_t bin) {
  return bin >= kHistBins - 1 ? 2048.0 : hist_bin_lower(bin + 1);
}

}  // namespace nexplain
