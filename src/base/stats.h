// Summary statistics of repeated draws.
#pragma once
#include <cmath>
#include <vector>

namespace mmdflow {

struct MeanSe {
  double mean = 0;
  double se = 0;  // the mean's standard error: sqrt(sum (x - mean)^2 / (K (K - 1)))
};

// Of K >= 2 values, summed in their order.
inline MeanSe mean_se(const std::vector<double>& x) {
  const double K = double(x.size());
  double sum = 0;
  for (double v : x) sum += v;
  const double mean = sum / K;
  double ss = 0;
  for (double v : x) ss += (v - mean) * (v - mean);
  return {mean, std::sqrt(ss / (K * (K - 1)))};
}

}  // namespace mmdflow
