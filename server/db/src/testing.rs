//! The original's university models, written exactly as codegen emits model code. Used by
//! this crate's tests and benchmark, and as the reference for the code generator.
//!
//! For each model codegen emits: a struct with one public field per column (in metadata
//! order, the implicit `id` first), one [`Column`] constant per column, [`Relation`]
//! constants for many-to-many fields, a `LazyLock<ModelMeta>` holding the normalized
//! metadata, and a [`Model`] impl; plus a `models()` function listing every model.

use std::sync::LazyLock;

use crate::error::Result;
use crate::model::{Column, Model, Relation, RowReader};
use crate::password::Password;
use crate::schema::{ColumnMeta, FieldType, ModelMeta, OnDelete};
use crate::value::{Arg, SqlValue};
use fluxon_schema::{Date, Timestamp};

/// An authorized user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct User {
    /// Implicit primary key.
    pub id: i64,
    /// Unique login name, at most 100 characters.
    pub username: String,
    /// Password (hashed on write, not loaded by default).
    pub password: Password,
    /// E-mail address.
    pub email: String,
    /// Set on insert.
    pub created_at: Timestamp,
}

impl User {
    /// Column `id`.
    pub const ID: Column<Self, i64> = Column::new(0, "id");
    /// Column `username`.
    pub const USERNAME: Column<Self, String> = Column::new(1, "username");
    /// Column `password`.
    pub const PASSWORD: Column<Self, Password> = Column::new(2, "password");
    /// Column `email`.
    pub const EMAIL: Column<Self, String> = Column::new(3, "email");
    /// Column `created_at`.
    pub const CREATED_AT: Column<Self, Timestamp> = Column::new(4, "created_at");
}

static USER_META: LazyLock<ModelMeta> = LazyLock::new(|| {
    ModelMeta::new("User", "user")
        .authorized_user()
        .column(
            ColumnMeta::new("username", 1, FieldType::Text)
                .max_length(100)
                .unique(),
        )
        .column(ColumnMeta::new("password", 2, FieldType::Text).password())
        .column(ColumnMeta::new("email", 3, FieldType::Text))
        .column(ColumnMeta::new("created_at", 4, FieldType::Timestamp).auto_now_add())
        .normalized()
});

impl Model for User {
    fn meta() -> &'static ModelMeta {
        &USER_META
    }
    fn from_row(row: &RowReader<'_, '_>) -> Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            username: row.get(1)?,
            password: row.get(2)?,
            email: row.get(3)?,
            created_at: row.get(4)?,
        })
    }
    fn values(&self) -> Vec<Arg<'_>> {
        vec![
            self.id.to_arg(),
            self.username.to_arg(),
            self.password.to_arg(),
            self.email.to_arg(),
            self.created_at.to_arg(),
        ]
    }
}

/// A teacher: one-to-one with a user, used as primary key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Teacher {
    /// The user (primary key).
    pub user: i64,
    /// Name.
    pub name: String,
    /// Department.
    pub department: String,
}

impl Teacher {
    /// Column `user`.
    pub const USER: Column<Self, i64> = Column::new(0, "user");
    /// Column `name`.
    pub const NAME: Column<Self, String> = Column::new(1, "name");
    /// Column `department`.
    pub const DEPARTMENT: Column<Self, String> = Column::new(2, "department");
}

static TEACHER_META: LazyLock<ModelMeta> = LazyLock::new(|| {
    ModelMeta::new("Teacher", "teacher")
        .column(
            ColumnMeta::new("user", 1, FieldType::Integer)
                .primary_key()
                .one_to_one("User", OnDelete::Cascade),
        )
        .column(ColumnMeta::new("name", 2, FieldType::Text))
        .column(ColumnMeta::new("department", 3, FieldType::Text))
        .normalized()
});

impl Model for Teacher {
    fn meta() -> &'static ModelMeta {
        &TEACHER_META
    }
    fn from_row(row: &RowReader<'_, '_>) -> Result<Self> {
        Ok(Self {
            user: row.get(0)?,
            name: row.get(1)?,
            department: row.get(2)?,
        })
    }
    fn values(&self) -> Vec<Arg<'_>> {
        vec![
            self.user.to_arg(),
            self.name.to_arg(),
            self.department.to_arg(),
        ]
    }
}

/// A course taught by a teacher (deleted with the teacher).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Course {
    /// Implicit primary key.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Course code.
    pub code: String,
    /// The teacher (foreign key, cascading).
    pub teacher: i64,
}

impl Course {
    /// Column `id`.
    pub const ID: Column<Self, i64> = Column::new(0, "id");
    /// Column `name`.
    pub const NAME: Column<Self, String> = Column::new(1, "name");
    /// Column `code`.
    pub const CODE: Column<Self, String> = Column::new(2, "code");
    /// Column `teacher`.
    pub const TEACHER: Column<Self, i64> = Column::new(3, "teacher");
}

static COURSE_META: LazyLock<ModelMeta> = LazyLock::new(|| {
    ModelMeta::new("Course", "course")
        .column(ColumnMeta::new("name", 1, FieldType::Text))
        .column(ColumnMeta::new("code", 2, FieldType::Text))
        .column(
            ColumnMeta::new("teacher", 3, FieldType::Integer)
                .foreign_key("Teacher", OnDelete::Cascade),
        )
        .normalized()
});

impl Model for Course {
    fn meta() -> &'static ModelMeta {
        &COURSE_META
    }
    fn from_row(row: &RowReader<'_, '_>) -> Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            name: row.get(1)?,
            code: row.get(2)?,
            teacher: row.get(3)?,
        })
    }
    fn values(&self) -> Vec<Arg<'_>> {
        vec![
            self.id.to_arg(),
            self.name.to_arg(),
            self.code.to_arg(),
            self.teacher.to_arg(),
        ]
    }
}

/// A student: one-to-one with a user as primary key, enrolled in courses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Student {
    /// The user (primary key).
    pub user: i64,
    /// Name.
    pub name: String,
    /// Birth date.
    pub birth_date: Date,
}

impl Student {
    /// Column `user`.
    pub const USER: Column<Self, i64> = Column::new(0, "user");
    /// Column `name`.
    pub const NAME: Column<Self, String> = Column::new(1, "name");
    /// Column `birth_date`.
    pub const BIRTH_DATE: Column<Self, Date> = Column::new(2, "birth_date");
    /// Many-to-many `courses`, through [`Enrollment`].
    pub const COURSES: Relation<Self, Course> = Relation::through("courses", Enrollment::meta);
}

static STUDENT_META: LazyLock<ModelMeta> = LazyLock::new(|| {
    ModelMeta::new("Student", "student")
        .column(
            ColumnMeta::new("user", 1, FieldType::Integer)
                .primary_key()
                .one_to_one("User", OnDelete::Cascade),
        )
        .column(ColumnMeta::new("name", 2, FieldType::Text))
        .column(ColumnMeta::new("birth_date", 3, FieldType::Date))
        .many_to_many("courses", 4, "Course", Some("Enrollment"))
        .normalized()
});

impl Model for Student {
    fn meta() -> &'static ModelMeta {
        &STUDENT_META
    }
    fn from_row(row: &RowReader<'_, '_>) -> Result<Self> {
        Ok(Self {
            user: row.get(0)?,
            name: row.get(1)?,
            birth_date: row.get(2)?,
        })
    }
    fn values(&self) -> Vec<Arg<'_>> {
        vec![
            self.user.to_arg(),
            self.name.to_arg(),
            self.birth_date.to_arg(),
        ]
    }
}

/// A student's enrollment in a course.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Enrollment {
    /// Implicit primary key.
    pub id: i64,
    /// The student (foreign key, cascading).
    pub student: i64,
    /// The course (foreign key, cascading).
    pub course: i64,
    /// Set on insert.
    pub date: Timestamp,
}

impl Enrollment {
    /// Column `id`.
    pub const ID: Column<Self, i64> = Column::new(0, "id");
    /// Column `student`.
    pub const STUDENT: Column<Self, i64> = Column::new(1, "student");
    /// Column `course`.
    pub const COURSE: Column<Self, i64> = Column::new(2, "course");
    /// Column `date`.
    pub const DATE: Column<Self, Timestamp> = Column::new(3, "date");
}

static ENROLLMENT_META: LazyLock<ModelMeta> = LazyLock::new(|| {
    ModelMeta::new("Enrollment", "enrollment")
        .column(
            ColumnMeta::new("student", 1, FieldType::Integer)
                .foreign_key("Student", OnDelete::Cascade),
        )
        .column(
            ColumnMeta::new("course", 2, FieldType::Integer)
                .foreign_key("Course", OnDelete::Cascade),
        )
        .column(ColumnMeta::new("date", 3, FieldType::Timestamp).auto_now_add())
        .index(&["student", "course"], true)
        .normalized()
});

impl Model for Enrollment {
    fn meta() -> &'static ModelMeta {
        &ENROLLMENT_META
    }
    fn from_row(row: &RowReader<'_, '_>) -> Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            student: row.get(1)?,
            course: row.get(2)?,
            date: row.get(3)?,
        })
    }
    fn values(&self) -> Vec<Arg<'_>> {
        vec![
            self.id.to_arg(),
            self.student.to_arg(),
            self.course.to_arg(),
            self.date.to_arg(),
        ]
    }
}

/// Every model of the schema, in declaration order.
pub fn models() -> Vec<ModelMeta> {
    vec![
        User::meta().clone(),
        Teacher::meta().clone(),
        Course::meta().clone(),
        Student::meta().clone(),
        Enrollment::meta().clone(),
    ]
}
