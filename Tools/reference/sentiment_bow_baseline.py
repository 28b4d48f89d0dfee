#!/usr/bin/env python3
"""A non-neural yardstick for the sentiment task: TF-IDF features and logistic regression
(scikit-learn) trained on the same TSV that `swiftgpt sft --task sentiment` uses, scored on the dev
TSV. It says what accuracy the training data alone allows a bag-of-words model.

    pip install scikit-learn
    python3 Tools/reference/sentiment_bow_baseline.py \
        --train ../shared/data/sentiment/sst2_train.tsv --dev ../shared/data/sentiment/sst2_dev.tsv
"""
import argparse

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression


def read_tsv(path):
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        next(f)  # header
        for line in f:
            text, label = line.rstrip("\n").split("\t")
            texts.append(text)
            labels.append(int(label))
    return texts, labels


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--dev", required=True)
    args = ap.parse_args()
    train_x, train_y = read_tsv(args.train)
    dev_x, dev_y = read_tsv(args.dev)
    for ngrams in [(1, 1), (1, 2)]:
        vectorizer = TfidfVectorizer(ngram_range=ngrams)
        features = vectorizer.fit_transform(train_x)
        for c in [1.0, 4.0]:
            model = LogisticRegression(C=c, max_iter=2000).fit(features, train_y)
            predictions = model.predict(vectorizer.transform(dev_x))
            accuracy = sum(int(p == y) for p, y in zip(predictions, dev_y)) / len(dev_y)
            print(f"tf-idf {ngrams[0]}-{ngrams[1]}-grams, C={c}: dev accuracy {100 * accuracy:.1f}%")


if __name__ == "__main__":
    main()
