//! Writing systems of the world's languages: each language spells its words with syllables
//! from its own Unicode block, so no two languages share a word or even a letter.

use serde::Serialize;

use crate::rng::SeededRng;

/// A writing system; its letters never occur in another script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Script {
    /// Basic Latin lowercase letters (U+0061–U+007A).
    Latin,
    /// Greek lowercase letters (U+03B1–U+03C9).
    Greek,
    /// Cyrillic lowercase letters (U+0430–U+044F).
    Cyrillic,
    /// Armenian lowercase letters (U+0561–U+0586).
    Armenian,
    /// Georgian Mkhedruli letters (U+10D0–U+10F0).
    Georgian,
    /// Hiragana syllables (U+3041–U+3096).
    Hiragana,
}

impl Script {
    /// The scripts in the order the world assigns them to `l0`, `l1`, ….
    pub const ALL: [Script; 6] =
        [Script::Latin, Script::Greek, Script::Cyrillic, Script::Armenian, Script::Georgian, Script::Hiragana];

    /// The script's name, as written in the docs and in `world.json`.
    pub fn name(self) -> &'static str {
        match self {
            Script::Latin => "latin",
            Script::Greek => "greek",
            Script::Cyrillic => "cyrillic",
            Script::Armenian => "armenian",
            Script::Georgian => "georgian",
            Script::Hiragana => "hiragana",
        }
    }

    /// Whether `c` belongs to this script's Unicode range.
    pub fn contains(self, c: char) -> bool {
        let range = match self {
            Script::Latin => 'a'..='z',
            Script::Greek => '\u{03B1}'..='\u{03C9}',
            Script::Cyrillic => '\u{0430}'..='\u{044F}',
            Script::Armenian => '\u{0561}'..='\u{0586}',
            Script::Georgian => '\u{10D0}'..='\u{10F0}',
            Script::Hiragana => '\u{3041}'..='\u{3096}',
        };
        range.contains(&c)
    }

    /// The syllables words are built from: consonant + vowel, or single kana for Hiragana.
    pub fn syllables(self) -> Vec<String> {
        let (onsets, vowels): (&str, &str) = match self {
            Script::Latin => ("ptkbdgmnslrvzfh", "aeiou"),
            Script::Greek => ("πτκβδγμνσλρφζθχ", "αεηιουω"),
            Script::Cyrillic => ("пткбдгмнслрвзфж", "аеиоуыяю"),
            Script::Armenian => ("պտկբդգմնսլրվզֆշ", "աեէիոօը"),
            Script::Georgian => ("პტკბდგმნსლრვზფშ", "აეიოუ"),
            Script::Hiragana => {
                return "かきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもらりるれろ"
                    .chars()
                    .map(String::from)
                    .collect()
            }
        };
        onsets.chars().flat_map(|c| vowels.chars().map(move |v| format!("{c}{v}"))).collect()
    }

    /// A random word of `syllables` syllables.
    pub fn word(self, rng: &mut SeededRng, syllables: usize) -> String {
        let table = self.syllables();
        (0..syllables).map(|_| table[rng.below(table.len())].as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_syllable_is_in_its_script_and_in_no_other() {
        for s in Script::ALL {
            let syl = s.syllables();
            assert!(syl.len() >= 35, "{} has only {} syllables", s.name(), syl.len());
            for c in syl.iter().flat_map(|x| x.chars()) {
                assert!(s.contains(c), "{c:?} not in {}", s.name());
                for other in Script::ALL.iter().filter(|&&o| o != s) {
                    assert!(!other.contains(c), "{c:?} of {} also in {}", s.name(), other.name());
                }
            }
        }
    }
}
