#!/usr/bin/env Rscript
# Small-sample HC2 inference fixture: HC2 standard errors with Bell-McCaffrey (Satterthwaite)
# degrees of freedom, computed with clubSandwich on tests/R/small_sample_data.csv.
#
# HC2 is clubSandwich's CR2 with every observation its own cluster; coef_test()/conf_int() with
# test = "Satterthwaite" give the Bell & McCaffrey (2002) degrees of freedom under the working
# model Var(e) = sigma^2 I (Imbens & Kolesar 2016, "Robust standard errors in small samples").
# estimatr::lm_robust(se_type = "HC2") is fitted as an independent check of the SE (se_estimatr).
#
# Dataset 5 is weighted (analytic weights w): there vcovCR(..., inverse_var = TRUE), i.e. the
# working model Var(e_i) = sigma^2 / w_i, which equals HC2 on the sqrt(w)-transformed regression
# (what estimatr's weighted HC2 does). clubSandwich's default for a weighted lm (inverse_var =
# FALSE, target = I) gives different SEs and is NOT what is written here.
#
# Usage (from the repository root):
#   python3 tests/R/make_small_sample_data.py && Rscript tests/R/clubsandwich_fixtures.R
#   Rscript tests/R/clubsandwich_fixtures.R [in.csv] [out.csv] [versions.txt]
# Needs: r-base-core r-cran-clubsandwich r-cran-estimatr (Debian packages). See tests/R/README.md.

suppressPackageStartupMessages({
  library(clubSandwich)
  library(estimatr)
})

args <- commandArgs(trailingOnly = TRUE)
here <- "tests/R"
inp <- if (length(args) >= 1) args[1] else file.path(here, "small_sample_data.csv")
out <- if (length(args) >= 2) args[2] else file.path(here, "clubsandwich_expected.csv")
ver <- if (length(args) >= 3) args[3] else file.path(here, "clubsandwich_versions.txt")

all_d <- read.csv(inp, stringsAsFactors = FALSE, encoding = "UTF-8")

formulas <- list(
  main = end ~ frame_shares + teaming + start + factor(stratum),
  interaction = end ~ frame_shares * teaming + start + factor(stratum)
)
# the "both arms vs neither" cell contrast in the interaction model
contrast_terms <- c("frame_shares", "teaming", "frame_shares:teaming")
contrast_name <- "cell:frame_shares/teaming"

rows <- list()
for (ds in sort(unique(all_d$dataset))) {
  d <- all_d[all_d$dataset == ds, ]
  weighted <- any(d$w != 1)
  cl <- seq_len(nrow(d))
  for (model in names(formulas)) {
    fo <- formulas[[model]]
    if (weighted) {
      fit <- lm(fo, data = d, weights = w)
      V <- vcovCR(fit, cluster = cl, type = "CR2", inverse_var = TRUE)
      er <- lm_robust(fo, data = d, weights = w, se_type = "HC2")
    } else {
      fit <- lm(fo, data = d)
      V <- vcovCR(fit, cluster = cl, type = "CR2")
      er <- lm_robust(fo, data = d, se_type = "HC2")
    }
    ct <- coef_test(fit, vcov = V, test = "Satterthwaite")
    ci <- conf_int(fit, vcov = V, test = "Satterthwaite", level = 0.95)
    stopifnot(identical(ct$Coef, ci$Coef), all.equal(ct$df_Satt, ci$df))
    rows[[length(rows) + 1]] <- data.frame(
      dataset = ds, model = model, n = nrow(d), term = ct$Coef,
      estimate = ct$beta, se_hc2 = ct$SE, df_bm = ct$df_Satt, p_value = ct$p_Satt,
      ci_low = ci$CI_L, ci_high = ci$CI_U,
      se_estimatr = unname(er$std.error[ct$Coef]), stringsAsFactors = FALSE
    )
    if (model == "interaction") {
      C <- matrix(as.numeric(names(coef(fit)) %in% contrast_terms), nrow = 1,
                  dimnames = list(contrast_name, names(coef(fit))))
      lc <- linear_contrast(fit, vcov = V, contrasts = C, test = "Satterthwaite",
                            level = 0.95, p_values = TRUE)
      cvec <- C[1, ]
      se_e <- sqrt(as.numeric(t(cvec) %*% vcov(er)[names(cvec), names(cvec)] %*% cvec))
      rows[[length(rows) + 1]] <- data.frame(
        dataset = ds, model = model, n = nrow(d), term = contrast_name,
        estimate = lc$Est, se_hc2 = lc$SE, df_bm = lc$df, p_value = lc$p_val,
        ci_low = lc$CI_L, ci_high = lc$CI_U, se_estimatr = se_e, stringsAsFactors = FALSE
      )
    }
  }
}

res <- do.call(rbind, rows)
rel <- max(abs(res$se_hc2 - res$se_estimatr) / res$se_estimatr)
if (rel > 1e-10) stop(sprintf("clubSandwich CR2 and estimatr HC2 SEs differ: max rel %.3g", rel))

res_txt <- res
for (col in c("estimate", "se_hc2", "df_bm", "p_value", "ci_low", "ci_high", "se_estimatr")) {
  res_txt[[col]] <- sprintf("%.17g", res[[col]])
}
write.csv(res_txt, out, row.names = FALSE, quote = TRUE, fileEncoding = "UTF-8")

versions <- c(
  sprintf("R: %s", R.version.string),
  sprintf("clubSandwich: %s", packageVersion("clubSandwich")),
  sprintf("estimatr: %s", packageVersion("estimatr")),
  sprintf("sandwich: %s", packageVersion("sandwich")),
  sprintf("platform: %s", R.version$platform),
  sprintf("max relative |se_hc2 - se_estimatr|: %.3g", rel)
)
writeLines(versions, ver)
cat(sprintf("wrote %s (%d rows) and %s\n", out, nrow(res), ver))
cat(versions, sep = "\n")
