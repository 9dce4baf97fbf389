// Summary statistics of repeated draws.
#pragma once
#include <cmath>
#include <vector>

namespace mmdflow {

// The mean of x (summed in its order) and the sum of squared deviations from it.
struct Moments {
  double mean = 0;
  double ss = 0;
};
inline Moments moments(const std::vector<double>& x) {
  double sum = 0;
  for (double v : x) sum += v;
  Moments m;
  m.mean = sum / double(x.size());
  for (double v : x) m.ss += (v - m.mean) * (v - m.mean);
  return m;
}

struct MeanSe {
  double mean = 0;
  double se = 0;  // the mean's standard error: sqrt(sum (x - mean)^2 / (K (K - 1)))
};

// Of K >= 2 values, summed in their order.
inline MeanSe mean_se(const std::vector<double>& x) {
  const double K = double(x.size());
  const Moments m = moments(x);
  return {m.mean, std::sqrt(m.ss / (K * (K - 1)))};
}

}  // namespace mmdflow
