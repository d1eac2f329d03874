/* tfee confidence rules: the C form of tfee.rules (keep the two in sync).
 * They match tfee.rules' numpy forms operation for operation; build without
 * fused multiply-adds (-ffp-contract=off, which GCC needs on ARM) to keep
 * that bit for bit. */
#include <math.h>

/* A cascade uses only its policy's functions; the others must not warn. */
#if defined(__GNUC__) || defined(__clang__)
#define TFEE_UNUSED __attribute__((unused))
#else
#define TFEE_UNUSED
#endif

enum { TFEE_MAX_SOFTMAX = 0, TFEE_ENTROPY = 1, TFEE_MARGIN = 2, TFEE_LEARNED = 3 };

/* Arg-max class, first on ties; -1 if a logit is not finite. */
TFEE_UNUSED static inline int tfee_argmax(const float* logits, int classes) {
  int best = 0;
  for (int i = 0; i < classes; ++i) {
    if (!isfinite(logits[i])) return -1;
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

/* Z = sum exp(s_i), sum exp(s_i) s_i and the second-largest s (s = x - x_best),
 * summed in index order as tfee.rules does. */
TFEE_UNUSED static inline void tfee_softmax_parts(const float* logits, int classes,
                                                  int best, double* total,
                                                  double* weighted, double* second) {
  const double top = logits[best];
  *total = 0.0;
  *weighted = 0.0;
  *second = -INFINITY;
  for (int i = 0; i < classes; ++i) {
    const double shifted = (double)logits[i] - top;
    const double e = exp(shifted);
    *total += e;
    *weighted += e * shifted;
    if (i != best && shifted > *second) *second = shifted;
  }
}

/* A logit rule's score from tfee_softmax_parts, clipped to [0, 1]. */
TFEE_UNUSED static inline double tfee_rule_value(int rule, double total, double weighted,
                                                 double second, int classes) {
  double score;
  if (rule == TFEE_ENTROPY) {
    score = 1.0 - (log(total) - weighted / total) / log((double)classes);
  } else if (rule == TFEE_MARGIN) {
    score = (1.0 - exp(second)) / total;
  } else {
    score = 1.0 / total;
  }
  return score < 0.0 ? 0.0 : (score > 1.0 ? 1.0 : score);
}

/* The rule's score in [0, 1]; NAN when undefined (never passes). */
TFEE_UNUSED static inline double tfee_score(int rule, const float* logits, int classes,
                                            float learned) {
  const int best = tfee_argmax(logits, classes);
  if (best < 0) return NAN;
  if (rule == TFEE_LEARNED) return isfinite(learned) ? (double)learned : NAN;
  double total, weighted, second;
  tfee_softmax_parts(logits, classes, best, &total, &weighted, &second);
  return tfee_rule_value(rule, total, weighted, second, classes);
}

/* Patience's agreement: the streak of consecutive exits on one class. */
TFEE_UNUSED static inline int tfee_streak(int previous, int streak, int predicted) {
  if (predicted < 0) return 0;
  return predicted == previous ? streak + 1 : 1;
}

/* The learned decision (rule "decision") at exit `exit_index` (0-based):
 * updates the running state (ensemble: the sum of the exits' log-softmax so
 * far; previous and streak: patience's) and returns sigmoid(bias + sum_i
 * weights[i] * signal_i) over tfee.rules.DECISION_SIGNALS, or NAN. */
TFEE_UNUSED static inline double tfee_decision_score(
    const float* logits, int classes, int exit_index, double* ensemble,
    int* previous, int* streak, const double* weights, double bias) {
  const int best = tfee_argmax(logits, classes);
  *streak = tfee_streak(*previous, *streak, best);
  *previous = best;
  if (best < 0) {
    for (int i = 0; i < classes; ++i) ensemble[i] = NAN;
    return NAN;
  }
  const double top = logits[best];
  double total, weighted, second;
  tfee_softmax_parts(logits, classes, best, &total, &weighted, &second);
  const double log_total = log(total);
  const double count = (double)(exit_index + 1);
  int ensemble_best = 0;
  double mean_top = 0.0;
  for (int i = 0; i < classes; ++i) ensemble[i] += ((double)logits[i] - top) - log_total;
  for (int i = 0; i < classes; ++i) {
    const double mean = ensemble[i] / count;
    if (!isfinite(mean)) return NAN; /* An earlier exit was not finite. */
    if (i == 0 || mean > mean_top) {
      mean_top = mean;
      ensemble_best = i;
    }
  }
  double ensemble_total = 0.0;
  for (int i = 0; i < classes; ++i) ensemble_total += exp(ensemble[i] / count - mean_top);
  double signals[6];
  signals[0] = tfee_rule_value(TFEE_MAX_SOFTMAX, total, weighted, second, classes);
  signals[1] = tfee_rule_value(TFEE_MARGIN, total, weighted, second, classes);
  signals[2] = tfee_rule_value(TFEE_ENTROPY, total, weighted, second, classes);
  signals[3] = 1.0 / ensemble_total;
  signals[4] = ensemble_best == best ? 1.0 : 0.0;
  signals[5] = (double)*streak / count;
  double z = bias;
  for (int i = 0; i < 6; ++i) z = z + weights[i] * signals[i];
  if (!isfinite(z)) return NAN;
  const double score = 1.0 / (1.0 + exp(-z));
  return score < 0.0 ? 0.0 : (score > 1.0 ? 1.0 : score);
}

/* The learned ensemble (Zero Time Waste) at exit `exit_index` (0-based):
 * stores this exit's log-softmax in history[exit_index * classes + i] and
 * writes the exit's answer, biases[i] + sum_j weights[j] * history[j *
 * classes + i] over the exits so far (in j order), into answer (which may
 * be `logits` itself: they are read first). */
TFEE_UNUSED static inline void tfee_ensemble(const float* logits, int classes,
                                             int exit_index, double* history,
                                             const double* weights,
                                             const double* biases, float* answer) {
  double* mine = history + exit_index * classes;
  const int best = tfee_argmax(logits, classes);
  if (best < 0) {
    for (int i = 0; i < classes; ++i) mine[i] = NAN;
  } else {
    const double top = logits[best];
    double total, weighted, second;
    tfee_softmax_parts(logits, classes, best, &total, &weighted, &second);
    const double log_total = log(total);
    for (int i = 0; i < classes; ++i) mine[i] = ((double)logits[i] - top) - log_total;
  }
  for (int i = 0; i < classes; ++i) {
    double value = biases[i];
    for (int j = 0; j <= exit_index; ++j) value = value + weights[j] * history[j * classes + i];
    answer[i] = (float)value;
  }
}

/* The exit decision: finite and at least the threshold (INFINITY: never). */
TFEE_UNUSED static inline int tfee_leaves(double score, double threshold) {
  return isfinite(score) && score >= threshold;
}
